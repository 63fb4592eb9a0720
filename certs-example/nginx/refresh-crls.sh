#!/bin/sh
# Fetch the IoMT CRLs (DER, from the URLs in the certificates' CRL distribution points), convert
# them to one PEM bundle for nginx's ssl_crl, and reload nginx. Run from cron well before
# nextUpdate (every hour is plenty: Basic CRLs live 96 h, High 48 h).
#   CRL_BASE=http://ca.example:8080/crl ./refresh-crls.sh /etc/nginx/iomt/iomt-crls.pem
set -eu
out=${1:-/etc/nginx/iomt/iomt-crls.pem}
base=${CRL_BASE:?set CRL_BASE to the CA public URL + /crl}
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.der"' EXIT
for ca in root basic substantial high; do
    curl -fsS --max-time 20 "$base/$ca.crl" -o "$tmp.der"
    openssl crl -inform DER -in "$tmp.der" >> "$tmp"
done
install -m 0644 "$tmp" "$out"
nginx -s reload
