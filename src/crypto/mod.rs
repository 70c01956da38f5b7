//! Message protection: `encrypt(sign(base64(zlib(msg))))` and back, via OpenSSL's PKCS#7.
