//! Public-key validation of an uncompressed P-256 or P-384 point (SEC 1 §3.2.2.1, NIST SP
//! 800-56A §5.6.2.3.4): both coordinates below the field prime and y² = x³ − 3x + b. Both curves
//! have cofactor 1, so a point that satisfies the equation is in the prime-order group; the
//! point at infinity has no uncompressed encoding. This is field arithmetic only (a few µs),
//! where validating by key agreement costs a full scalar multiplication on every issuance.

use num_bigint::BigUint;

use crate::policy::Curve;

/// The field prime and the curve coefficient b, big-endian hex (FIPS 186-4 §D.1.2.3, §D.1.2.4).
fn parameters(curve: Curve) -> (&'static str, &'static str) {
    match curve {
        Curve::P256 => (
            "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
            "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
        ),
        Curve::P384 => (
            "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe\
             ffffffff0000000000000000ffffffff",
            "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a\
             c656398d8a2ed19d2a85c8edd3ec2aef",
        ),
    }
}

fn from_hex(hex: &str) -> BigUint {
    BigUint::parse_bytes(hex.as_bytes(), 16).unwrap_or_default()
}

/// Checks an uncompressed point (`04 ‖ x ‖ y`) of the curve; the error completes "EC public
/// key …".
pub(super) fn check_point(curve: Curve, point: &[u8]) -> Result<(), &'static str> {
    let (p, b) = parameters(curve);
    let size = p.len() / 2;
    if point.len() != 1 + 2 * size || point.first() != Some(&0x04) {
        return Err("is not an uncompressed point of the curve's size");
    }
    let (p, b) = (from_hex(p), from_hex(b));
    let x = BigUint::from_bytes_be(&point[1..=size]);
    let y = BigUint::from_bytes_be(&point[1 + size..]);
    if x >= p || y >= p {
        return Err("has a coordinate outside the field");
    }
    let three = BigUint::from(3u8);
    // x³ − 3x + b, kept non-negative by adding 3p (3x < 3p).
    let right = (&x * &x * &x + &three * &p - &three * &x + b) % &p;
    let left = (&y * &y) % &p;
    if left == right {
        Ok(())
    } else {
        Err("is not a point on the curve")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    };

    fn public_point(curve: Curve) -> Vec<u8> {
        let algorithm = match curve {
            Curve::P256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(algorithm, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), &rng).expect("key");
        pair.public_key().as_ref().to_vec()
    }

    #[test]
    fn generated_keys_are_points_of_their_curve() {
        for curve in [Curve::P256, Curve::P384] {
            for _ in 0..16 {
                assert_eq!(check_point(curve, &public_point(curve)), Ok(()));
            }
        }
    }

    #[test]
    fn a_changed_coordinate_is_off_the_curve() {
        for curve in [Curve::P256, Curve::P384] {
            let mut point = public_point(curve);
            let last = point.len() - 1;
            point[last] ^= 0x01;
            assert_eq!(
                check_point(curve, &point),
                Err("is not a point on the curve")
            );
        }
    }

    #[test]
    fn a_coordinate_at_or_above_the_prime_is_refused() {
        let mut point = public_point(Curve::P256);
        point[1..33].copy_from_slice(&[0xff; 32]);
        assert_eq!(
            check_point(Curve::P256, &point),
            Err("has a coordinate outside the field")
        );
    }

    #[test]
    fn a_point_of_the_other_curve_or_compressed_is_refused() {
        let p384 = public_point(Curve::P384);
        assert!(check_point(Curve::P256, &p384).is_err());
        let mut compressed = public_point(Curve::P256)[..33].to_vec();
        compressed[0] = 0x02;
        assert!(check_point(Curve::P256, &compressed).is_err());
    }
}
