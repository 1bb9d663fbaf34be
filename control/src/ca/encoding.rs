//! Byte-string encodings the CA needs: fixed-width lowercase base36 for
//! digests, secrets and keys (Swarm's token alphabet), a constant-time
//! comparison, and PEM helpers.

use crate::error_chain::ErrorChain;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::CaError;

const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// `bytes` as a big-endian number in lowercase base36, left-padded with `0`
/// to `width` (never truncated: a wider number gives a longer string).
///
/// 16 bytes fit 25 characters, 32 bytes fit 50.
pub fn base36_encode(bytes: &[u8], width: usize) -> String {
    let mut number: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    // Repeated long division of the big-endian number by 36.
    while number.iter().any(|&b| b != 0) {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 36) as u8;
            remainder = acc % 36;
        }
        digits.push(DIGITS[remainder as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

/// The inverse of [`base36_encode`]: `text` (lowercase base36) as exactly
/// `len` big-endian bytes; `None` on a foreign character or if the number
/// does not fit in `len` bytes.
pub fn base36_decode(text: &str, len: usize) -> Option<Vec<u8>> {
    let mut number = vec![0u8; len];
    for c in text.bytes() {
        let digit = DIGITS.iter().position(|&d| d == c)? as u32;
        // number = number * 36 + digit
        let mut carry = digit;
        for byte in number.iter_mut().rev() {
            let acc = u32::from(*byte) * 36 + carry;
            *byte = (acc & 0xff) as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(number)
}

/// Whether `text` is non-empty lowercase base36.
pub(crate) fn is_base36(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|c| DIGITS.contains(&c))
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Every certificate in a PEM text, in order; `what` names it in errors.
pub(crate) fn certs_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::InvalidPem {
            what,
            reason: e.chain().to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaError::InvalidPem {
            what,
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The first certificate of a PEM text.
pub(crate) fn cert_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = certs_from_pem(pem, what)?;
    Ok(certs.swap_remove(0))
}

/// A private key (PKCS#8, SEC1 or PKCS#1) from PEM.
pub(crate) fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, CaError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::InvalidPem {
        what: "private key PEM",
        reason: e.chain().to_string(),
    })
}

/// A DER certificate as a PEM block.
pub(crate) fn cert_to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Fills a buffer from the system's secure random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], CaError> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CaError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::to_base36;
    use proptest::prelude::*;

    #[test]
    fn widths_match_swarm() {
        assert_eq!(base36_encode(&[0xff; 16], 25).len(), 25);
        assert_eq!(base36_encode(&[0xff; 32], 50).len(), 50);
        assert_eq!(base36_encode(&[0; 32], 50), "0".repeat(50));
        assert_eq!(base36_encode(&[35], 2), "0z");
    }

    #[test]
    fn decode_rejects_foreign_and_oversized() {
        assert_eq!(base36_decode("0Z", 1), None);
        assert_eq!(base36_decode("-", 1), None);
        assert_eq!(base36_decode("73", 1), Some(vec![255]));
        assert_eq!(base36_decode("74", 1), None, "256 does not fit one byte");
        assert_eq!(base36_decode(&"z".repeat(50), 32), None, "36^50 > 2^256");
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    proptest! {
        #[test]
        fn agrees_with_the_u128_encoder(v: u128) {
            prop_assert_eq!(base36_encode(&v.to_be_bytes(), 25), to_base36(v, 25));
        }

        #[test]
        fn round_trips_32_bytes(bytes in proptest::array::uniform32(any::<u8>())) {
            let text = base36_encode(&bytes, 50);
            prop_assert_eq!(text.len(), 50);
            prop_assert_eq!(base36_decode(&text, 32), Some(bytes.to_vec()));
        }
    }
}
