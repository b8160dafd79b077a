// TLS and mutual TLS with certificates the test makes with openssl.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "server/server_process.hpp"

namespace {

namespace pb = ::ntkserve::v1;

bool make_certificates(const std::string& dir) {
  const std::string script = dir + "/make-certificates.sh";
  {
    std::ofstream out(script);
    out << "set -e\ncd '" << dir << "'\n"
        << "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "
           "/CN=ntk-test-ca\n"
        << "for who in server client; do\n"
        << "  openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj /CN=localhost\n"
        << "  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' "
           "> $who.ext\n"
        << "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2 "
           "-extfile $who.ext\n"
        << "done\n";
  }
  return std::system(("bash '" + script + "' >/dev/null 2>&1").c_str()) == 0;
}

TEST(Tls, EncryptedChannelsWorkAndPlaintextIsRefused) {
  const std::string dir = ntktest::temporary_directory("tls");
  if (!make_certificates(dir)) GTEST_SKIP() << "openssl is not available to make test certificates";
  ntktest::ServerProcess server(dir + "/data",
                                {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key"});
  auto options = server.client_options();
  options.retries = 0;
  options.timeout_seconds = 5;
  {
    ntkclient::Client plaintext(options);
    EXPECT_THROW(plaintext.health(), ntkclient::RpcError);
  }
  options.tls = true;
  options.tls_ca_file = dir + "/ca.pem";
  ntkclient::Client client(options);
  EXPECT_EQ(client.health(), "SERVING");
  ntk::Matrix<double> x(3, 2, 0.5);
  EXPECT_EQ(client.upload("over-tls", x.view(), nullptr).rows(), 3);
}

TEST(Tls, MutualTlsRequiresAClientCertificateSignedByTheCa) {
  const std::string dir = ntktest::temporary_directory("mtls");
  if (!make_certificates(dir)) GTEST_SKIP() << "openssl is not available to make test certificates";
  ntktest::ServerProcess server(dir + "/data", {"--tls-cert", dir + "/server.pem", "--tls-key",
                                                dir + "/server.key", "--tls-client-ca", dir + "/ca.pem"});
  auto options = server.client_options();
  options.retries = 0;
  options.timeout_seconds = 5;
  options.tls = true;
  options.tls_ca_file = dir + "/ca.pem";
  {
    ntkclient::Client anonymous(options);
    EXPECT_THROW(anonymous.list_datasets(), ntkclient::RpcError);
  }
  options.tls_cert_file = dir + "/client.pem";
  options.tls_key_file = dir + "/client.key";
  ntkclient::Client client(options);
  EXPECT_EQ(client.health(), "SERVING");
  EXPECT_TRUE(client.list_datasets().empty());
}

}  // namespace
