//! Certificate serial numbers: positive, 16 octets (up to 20 when a policy asks for more random
//! bits), with at least 64 bits from the system CSPRNG (RFC 5280 §4.1.2.2 allows up to 20
//! octets; the CA/Browser Forum's Baseline Requirements §7.1 ask for 64 unpredictable bits).

use iomt_core::policy::SerialNumberRules;
use rcgen::SerialNumber;
use ring::rand::SecureRandom;
use time::OffsetDateTime;

use super::PkiError;

/// Octet 0 of every serial: positive, and non-zero so no DER leading-zero trimming shortens it.
const LEAD: u8 = 0x40;

/// Octets 1–6 of an issuance serial: the issuance time in milliseconds (48 bits).
const TIME_OCTETS: usize = 6;

/// Random octets of an issuance serial at the least: 72 bits, above the 64 required.
const MIN_RANDOM_OCTETS: usize = 9;

/// RFC 5280 §4.1.2.2: conforming CAs use serials of at most 20 octets.
const MAX_OCTETS: usize = 20;

/// A serial of 126 random bits, for CA, TLS and responder certificates.
pub fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    bytes[0] = LEAD | (bytes[0] & 0x3f);
    Ok(SerialNumber::from_slice(&bytes))
}

/// The serial of a certificate issued at `now` and recorded in the registry: the time in
/// milliseconds (octets 1–6) ahead of at least 72 bits from the CSPRNG, or as many as
/// `min_random_bits` asks.
///
/// Serials issued close together sort together, so each new entry of the registry's serial
/// index lands in the index's last leaf instead of a random one: a certificate writes one page
/// less to the WAL, and the index pages a commit touches stay in the page cache however many
/// certificates are stored. The random bits keep serials unpredictable, and unique across
/// replicas that issue in the same millisecond without coordinating. A policy asking for more
/// random bits than fit beside the time (over 104) gets a serial of random octets only.
pub fn issuance_serial(
    now: OffsetDateTime,
    min_random_bits: u32,
) -> Result<SerialNumber, PkiError> {
    if min_random_bits > SerialNumberRules::MAX_RANDOM_BITS {
        return Err(PkiError::SerialRandomness(min_random_bits));
    }
    let random_octets = usize::try_from(min_random_bits.div_ceil(8))
        .unwrap_or(usize::MAX)
        .max(MIN_RANDOM_OCTETS);
    let time_octets = if 1 + TIME_OCTETS + random_octets <= MAX_OCTETS {
        TIME_OCTETS
    } else {
        0
    };
    let mut bytes = vec![LEAD; 1 + time_octets + random_octets];
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    bytes[1..=time_octets].copy_from_slice(&millis.to_be_bytes()[8 - time_octets..]);
    fill_random(&mut bytes[1 + time_octets..])?;
    Ok(SerialNumber::from(bytes))
}

fn fill_random(bytes: &mut [u8]) -> Result<(), PkiError> {
    ring::rand::SystemRandom::new()
        .fill(bytes)
        .map_err(|_| PkiError::Random("the system random generator failed".into()))
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    fn hex_of(serial: &SerialNumber) -> String {
        hex::encode(serial.as_ref())
    }

    #[test]
    fn serials_are_positive_and_sixteen_octets() {
        let now = OffsetDateTime::now_utc();
        for serial in [
            random_serial().unwrap(),
            issuance_serial(now, SerialNumberRules::FLOOR_RANDOM_BITS).unwrap(),
        ] {
            assert_eq!(serial.as_ref().len(), 16);
            assert_eq!(serial.as_ref()[0] & 0xc0, 0x40, "{}", hex_of(&serial));
        }
    }

    #[test]
    fn issuance_serials_sort_by_time_as_stored_hex() {
        let now = OffsetDateTime::now_utc();
        let earlier = hex_of(&issuance_serial(now, SerialNumberRules::FLOOR_RANDOM_BITS).unwrap());
        let later = hex_of(
            &issuance_serial(
                now + Duration::milliseconds(1),
                SerialNumberRules::FLOOR_RANDOM_BITS,
            )
            .unwrap(),
        );
        assert!(earlier < later, "{earlier} !< {later}");
        let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap();
        assert_eq!(&earlier[2..14], format!("{millis:012x}"));
    }

    #[test]
    fn issuance_serials_in_the_same_millisecond_differ_in_their_random_part() {
        let now = OffsetDateTime::now_utc();
        let serials: std::collections::HashSet<String> = (0..1_000)
            .map(|_| {
                hex_of(&issuance_serial(now, SerialNumberRules::FLOOR_RANDOM_BITS).unwrap())[14..]
                    .to_owned()
            })
            .collect();
        assert_eq!(serials.len(), 1_000);
    }

    #[test]
    fn policy_asking_for_more_randomness_gets_longer_serials() {
        let now = OffsetDateTime::now_utc();
        let time_hex =
            &hex_of(&issuance_serial(now, SerialNumberRules::FLOOR_RANDOM_BITS).unwrap())[..14];
        for (bits, octets, time_ordered) in [(72, 16, true), (104, 20, true), (105, 15, false)] {
            let serial = issuance_serial(now, bits).unwrap();
            assert_eq!(serial.as_ref().len(), octets, "{bits} bits");
            assert_eq!(serial.as_ref()[0], LEAD);
            assert_eq!(
                hex_of(&serial).starts_with(time_hex),
                time_ordered,
                "{bits}"
            );
        }
        assert_eq!(issuance_serial(now, 152).unwrap().as_ref().len(), 20);
        assert!(matches!(
            issuance_serial(now, 153),
            Err(PkiError::SerialRandomness(153))
        ));
    }
}
