#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# Makes a throw-away PKI for the TLS tests, with openssl, in the directory
# given (created if missing). Nothing it makes is ever committed.
#
#   ca.pem ca.key                 the mesh CA
#   node.pem node.key             signed by the CA, for localhost, 127.0.0.1
#                                 and ::1 (server and client use)
#   client.pem client.key         signed by the CA (a foreign client)
#   wrongname.pem wrongname.key   signed by the CA, only for other.example
#   expired.pem expired.key       signed by the CA, expired in 2020
#   other_ca.pem other_ca.key     an unrelated CA
#   rogue.pem rogue.key           signed by the unrelated CA, for localhost
set -euo pipefail
dir="${1:?usage: make_test_pki.sh DIR}"
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {  # name cn
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() {  # name cn san ca
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "subjectAltName=$3" "extendedKeyUsage=serverAuth,clientAuth" \
    "basicConstraints=CA:FALSE" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" -CAcreateserial \
    -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

local_san="DNS:localhost,IP:127.0.0.1,IP:::1"
ca ca "tractor test CA"
ca other_ca "unrelated test CA"
leaf node tractor-node "$local_san" ca
leaf client tractor-client "$local_san" ca
leaf wrongname other.example "DNS:other.example" ca
leaf rogue rogue "$local_san" other_ca

# An expired certificate: `openssl ca` is the one command that takes dates.
key expired.key
openssl req -new -key expired.key -out expired.csr -subj "/CN=expired" 2>/dev/null
mkdir -p expired.db
: > expired.db/index.txt
echo 01 > expired.db/serial
cat > expired.db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = $PWD/expired.db/index.txt
new_certs_dir = $PWD/expired.db
serial = $PWD/expired.db/serial
default_md = sha256
policy = any
[any]
commonName = supplied
CNF
openssl ca -batch -config expired.db/ca.cnf -cert ca.pem -keyfile ca.key \
  -in expired.csr -out expired.pem -notext \
  -startdate 20200101000000Z -enddate 20200102000000Z 2>/dev/null
rm -rf expired.csr expired.db ./*.srl
chmod 600 ./*.key
