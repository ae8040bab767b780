//! Distinguished names as text (RFC 4514 style) and common-name extraction.

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// `CN=dev1, O=Contoso, C=US`: RDNs most-specific first (the reverse of their
/// DER order, as RFC 4514 and .NET print them), multi-valued RDNs joined by `+`,
/// values escaped per RFC 4514. Attributes without a short name print as
/// `OID.1.2.3=value`, values that are not strings as `#hex` of their DER.
pub(crate) fn format_name(name: &X509Name<'_>) -> String {
    let rdns: Vec<&_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            push_attribute(&mut out, attribute);
        }
    }
    out
}

/// The first common name of `name`, if any and if it is a string.
pub(crate) fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name().next().and_then(attribute_text)
}

fn push_attribute(out: &mut String, attribute: &AttributeTypeAndValue<'_>) {
    let oid = attribute.attr_type().to_id_string();
    match short_name(&oid) {
        Some(short) => out.push_str(short),
        None => {
            out.push_str("OID.");
            out.push_str(&oid);
        }
    }
    out.push('=');
    match attribute_text(attribute) {
        Some(text) => push_escaped(out, &text),
        None => {
            out.push('#');
            out.push_str(&hex::encode_upper(attribute.attr_value().as_bytes()));
        }
    }
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "T",
        "2.5.4.42" => "G",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "E",
        _ => return None,
    })
}

/// The attribute value as text for the string types certificates use.
fn attribute_text(attribute: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = attribute.attr_value();
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // Teletex is in practice Latin-1.
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// RFC 4514 §2.4 escaping.
fn push_escaped(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let needs_escape = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if needs_escape {
                out.push('\\');
            }
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_rfc4514() {
        let mut out = String::new();
        push_escaped(&mut out, " #a,b+c=d\"e\\f<g>h;i ");
        assert_eq!(out, "\\ #a\\,b\\+c\\=d\\\"e\\\\f\\<g\\>h\\;i\\ ");
        let mut out = String::new();
        push_escaped(&mut out, "#x");
        assert_eq!(out, "\\#x");
    }

    #[test]
    fn known_short_names() {
        assert_eq!(short_name("2.5.4.3"), Some("CN"));
        assert_eq!(short_name("1.2.3.4"), None);
    }
}
