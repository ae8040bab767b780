#!/usr/bin/env sh
# Make the TLS identity the compose replicas share: a CA and a server
# certificate signed by it, in deploy/compose/tls/. Devices and tools trust
# tls/ca.pem. Names: the arguments (default: localhost and 127.0.0.1); give
# the names and addresses devices really dial, e.g.
#   deploy/compose/dev-tls.sh dps.example.com 10.0.0.5
# For production, use a certificate from your own CA instead.
set -eu
cd "$(dirname "$0")"
[ "$#" -gt 0 ] || set -- localhost 127.0.0.1
san=""
for name in "$@"; do
  case "$name" in
    *[!0-9.]*) entry="DNS:$name" ;;
    *) entry="IP:$name" ;;
  esac
  san="${san:+$san,}$entry"
done
mkdir -p tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=dps compose development CA" -keyout tls/ca.key -out tls/ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=$1" -keyout tls/server.key -out tls/server.csr 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
  "$san" > tls/server.ext
openssl x509 -req -in tls/server.csr -CA tls/ca.pem -CAkey tls/ca.key -CAcreateserial \
  -days 825 -extfile tls/server.ext -out tls/server.pem 2>/dev/null
rm -f tls/server.csr tls/server.ext tls/ca.srl
# The replicas run as an unprivileged user with another uid: the key must be
# readable to it through the bind mount (a development key; keep real keys
# in a secret store).
chmod 0644 tls/server.key
chmod 0600 tls/ca.key
echo "wrote $(pwd)/tls: trust ca.pem; server certificate for $san"
