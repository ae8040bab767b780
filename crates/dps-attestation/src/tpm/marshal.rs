//! TPM 2.0 wire encoding: big-endian integers and `TPM2B` (u16 size + bytes).

/// Builds a marshalled TPM structure.
#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn u16(&mut self, value: u16) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A `TPM2B`: u16 size, then the bytes. Every TPM2B built here holds at
    /// most a few hundred bytes, far from the u16 limit.
    pub(crate) fn tpm2b(&mut self, bytes: &[u8]) -> &mut Self {
        let size = u16::try_from(bytes.len()).expect("TPM2B contents fit in u16");
        self.u16(size).bytes(bytes)
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Reads a marshalled TPM structure; every read fails cleanly past the end.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader(bytes)
    }

    pub(crate) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.0.len() < len {
            return None;
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Some(head)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn tpm2b(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = Writer::default().u16(0x0102).u32(7).tpm2b(b"abc").finish();
        assert_eq!(bytes, [1, 2, 0, 0, 0, 7, 0, 3, b'a', b'b', b'c']);
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.u16(), Some(0x0102));
        assert_eq!(reader.u32(), Some(7));
        assert_eq!(reader.tpm2b(), Some(&b"abc"[..]));
        assert_eq!(reader.u16(), None);
        assert!(reader.rest().is_empty());
    }

    #[test]
    fn short_input_is_none() {
        assert_eq!(Reader::new(&[0, 5, 1]).tpm2b(), None);
        assert_eq!(Reader::new(&[0]).u16(), None);
    }
}
