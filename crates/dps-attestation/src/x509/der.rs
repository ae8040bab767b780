//! A strict look at the parts of a certificate its signature does not cover.
//!
//! The parser is lenient about the outer framing (tag classes, the BIT STRING's
//! unused-bits octet). Those bytes are not signed, so leniency there would let
//! one certificate travel under many encodings — and many thumbprints. This
//! check pins them to the single DER encoding.

/// One DER element: tag byte, content, and what follows it. Only minimal
/// definite lengths are accepted, and only single-byte tags.
fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count || rest[0] == 0 {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return None;
        }
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The content of the one DER element that `bytes` holds (nothing after it).
pub(crate) fn content_of(bytes: &[u8]) -> Option<&[u8]> {
    match element(bytes)? {
        (_, content, []) => Some(content),
        _ => None,
    }
}

/// The bytes of the element at the start of `bytes`.
fn whole(bytes: &[u8], after: &[u8]) -> Option<usize> {
    bytes.len().checked_sub(after.len())
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`
/// in exact DER, with `tbs_raw` as its first element, the outer algorithm
/// byte-identical to `tbsCertificate.signature`, and a signature BIT STRING
/// without unused bits.
pub(crate) fn check_unsigned_framing(der: &[u8], tbs_raw: &[u8]) -> Result<(), &'static str> {
    const BAD: &str = "certificate is not in canonical DER";
    let (tag, content, rest) = element(der).ok_or(BAD)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(BAD);
    }
    let (tag, tbs_content, after_tbs) = element(content).ok_or(BAD)?;
    let tbs_len = whole(content, after_tbs).ok_or(BAD)?;
    if tag != 0x30 || &content[..tbs_len] != tbs_raw {
        return Err(BAD);
    }
    let (tag, _, after_algorithm) = element(after_tbs).ok_or(BAD)?;
    let outer_algorithm = &after_tbs[..whole(after_tbs, after_algorithm).ok_or(BAD)?];
    if tag != 0x30 {
        return Err(BAD);
    }
    let (tag, signature, rest) = element(after_algorithm).ok_or(BAD)?;
    if tag != 0x03 || !rest.is_empty() || signature.first() != Some(&0) {
        return Err(BAD);
    }
    // tbsCertificate: [0] version OPTIONAL, serialNumber INTEGER, signature AlgorithmIdentifier, …
    let mut fields = tbs_content;
    if fields.first() == Some(&0xA0) {
        fields = element(fields).ok_or(BAD)?.2;
    }
    let (tag, _, after_serial) = element(fields).ok_or(BAD)?;
    if tag != 0x02 {
        return Err(BAD);
    }
    let (_, _, after_inner) = element(after_serial).ok_or(BAD)?;
    let inner_algorithm = &after_serial[..whole(after_serial, after_inner).ok_or(BAD)?];
    if inner_algorithm != outer_algorithm {
        return Err(BAD);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_be_minimal() {
        assert_eq!(
            element(&[0x04, 0x01, 0xAA]),
            Some((0x04, &[0xAA][..], &[][..]))
        );
        assert_eq!(element(&[0x04, 0x81, 0x01, 0xAA]), None);
        assert_eq!(element(&[0x04, 0x82, 0x00, 0x81]), None);
        assert_eq!(element(&[0x04, 0x80]), None);
        assert_eq!(element(&[0x04, 0x05, 0xAA]), None);
        assert_eq!(element(&[0x1F, 0x01, 0x00]), None);
    }
}
