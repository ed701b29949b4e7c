//! Netstrings (`<decimal byte length>:<payload>,`), the framing of Kamailio's evapi
//! (`netstring_format=1`).
//!
//! [`Decoder`] takes bytes as they come from a TCP stream, split anywhere, and returns
//! whole payloads. A frame longer than the configured maximum, a length that is not
//! decimal, or a missing `,` is an error: the stream has lost its framing and must be
//! reconnected. After an error the decoder keeps returning it.

/// Largest payload accepted by default (an evapi event is a few hundred bytes).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Why a byte stream is not a sequence of netstrings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetstringError {
    #[error("netstring length has a byte {byte:#04x} that is not a decimal digit")]
    BadLength { byte: u8 },
    #[error("netstring has an empty length before its ':'")]
    EmptyLength,
    #[error("netstring length has a leading zero")]
    LeadingZero,
    #[error("netstring announces more than {max} bytes (the largest frame accepted)")]
    TooLong { max: usize },
    #[error("netstring of {len} bytes ends with byte {byte:#04x} instead of ','")]
    MissingComma { len: usize, byte: u8 },
}

/// Incremental netstring decoder with a bounded frame size.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as frames.
    start: usize,
    max_frame: usize,
    failed: Option<NetstringError>,
}

impl Decoder {
    /// A decoder that refuses payloads longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Decoder { buf: Vec::new(), start: 0, max_frame, failed: None }
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete payload, `None` until more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, NetstringError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match self.parse() {
            Ok(Some((payload_start, len))) => {
                let payload = self.buf[payload_start..payload_start + len].to_vec();
                self.start = payload_start + len + 1;
                Ok(Some(payload))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Offset and length of the first payload when it is complete.
    fn parse(&self) -> Result<Option<(usize, usize)>, NetstringError> {
        let pending = &self.buf[self.start..];
        let mut len: usize = 0;
        for (digits, &byte) in pending.iter().enumerate() {
            if byte == b':' {
                if digits == 0 {
                    return Err(NetstringError::EmptyLength);
                }
                let payload_start = self.start + digits + 1;
                let end = payload_start + len;
                return match self.buf.get(end) {
                    None => Ok(None),
                    Some(b',') => Ok(Some((payload_start, len))),
                    Some(&byte) => Err(NetstringError::MissingComma { len, byte }),
                };
            }
            if !byte.is_ascii_digit() {
                return Err(NetstringError::BadLength { byte });
            }
            // "0" alone is the empty payload; more digits after a 0 could pile up forever
            if digits == 1 && len == 0 {
                return Err(NetstringError::LeadingZero);
            }
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(byte - b'0')))
                .filter(|&l| l <= self.max_frame)
                .ok_or(NetstringError::TooLong { max: self.max_frame })?;
        }
        Ok(None)
    }
}

/// Appends `payload` as one netstring to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_all(decoder: &mut Decoder) -> Result<Vec<Vec<u8>>, NetstringError> {
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }

    #[test]
    fn decodes_the_hello_of_the_draft() {
        let payload = br#"{"type":"hello","last_seq":0,"ts_ms":1796283378350,"instance":"1796283378-516903812","version":"kamailio 5.6.3 (x86_64/linux) "}"#;
        // The draft prints this hello with the prefix "131:", but the payload as printed is
        // 128 bytes (its version string was probably shortened): the length is the byte count.
        assert_eq!(payload.len(), 128);
        let mut wire = b"128:".to_vec();
        wire.extend_from_slice(payload);
        wire.push(b',');
        let mut decoder = Decoder::new(DEFAULT_MAX_FRAME);
        decoder.extend(&wire);
        assert_eq!(decode_all(&mut decoder).unwrap(), vec![payload.to_vec()]);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn encodes_the_hello_request() {
        let mut out = Vec::new();
        encode(b"hello", &mut out);
        assert_eq!(out, b"5:hello,");
    }

    #[test]
    fn empty_payload_and_partial_frames() {
        let mut decoder = Decoder::new(16);
        decoder.extend(b"0:,3:a");
        assert_eq!(decoder.next_frame().unwrap(), Some(Vec::new()));
        assert_eq!(decoder.next_frame().unwrap(), None);
        decoder.extend(b"bc");
        assert_eq!(decoder.next_frame().unwrap(), None, "the ',' is still missing");
        decoder.extend(b",");
        assert_eq!(decoder.next_frame().unwrap(), Some(b"abc".to_vec()));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn oversized_frame_is_refused_before_its_payload_arrives() {
        let mut decoder = Decoder::new(100);
        decoder.extend(b"100:");
        assert_eq!(decoder.next_frame().unwrap(), None, "exactly the maximum is allowed");
        let mut decoder = Decoder::new(100);
        decoder.extend(b"101");
        assert_eq!(decoder.next_frame(), Err(NetstringError::TooLong { max: 100 }));
        // an absurd length must not overflow
        let mut decoder = Decoder::new(usize::MAX);
        decoder.extend(b"99999999999999999999999999999:");
        assert_eq!(decoder.next_frame(), Err(NetstringError::TooLong { max: usize::MAX }));
    }

    #[test]
    fn malformed_frames_are_errors_and_stay_errors() {
        let mut decoder = Decoder::new(100);
        decoder.extend(b"3:abc;");
        assert_eq!(decoder.next_frame(), Err(NetstringError::MissingComma { len: 3, byte: b';' }));
        decoder.extend(b"1:x,");
        assert_eq!(decoder.next_frame(), Err(NetstringError::MissingComma { len: 3, byte: b';' }), "framing is lost for good");

        let mut decoder = Decoder::new(100);
        decoder.extend(b"{\"type\"");
        assert_eq!(decoder.next_frame(), Err(NetstringError::BadLength { byte: b'{' }));

        let mut decoder = Decoder::new(100);
        decoder.extend(b":x,");
        assert_eq!(decoder.next_frame(), Err(NetstringError::EmptyLength));

        let mut decoder = Decoder::new(100);
        decoder.extend(&[b'0'; 1000]);
        assert_eq!(decoder.next_frame(), Err(NetstringError::LeadingZero), "zeros must not pile up unbounded");

        let mut decoder = Decoder::new(100);
        decoder.extend(b"-1:");
        assert_eq!(decoder.next_frame(), Err(NetstringError::BadLength { byte: b'-' }));
    }

    #[test]
    fn buffer_is_compacted_over_a_long_stream() {
        let mut decoder = Decoder::new(100);
        let mut wire = Vec::new();
        encode(b"0123456789", &mut wire);
        for _ in 0..10_000 {
            // a frame and a half per read: the buffer never empties completely
            decoder.extend(&wire[..7]);
            decoder.extend(&wire[7..]);
            assert_eq!(decoder.next_frame().unwrap(), Some(b"0123456789".to_vec()));
        }
        assert!(decoder.buf.len() < 10_000, "buffer grew to {}", decoder.buf.len());
    }

    proptest! {
        #[test]
        fn any_split_decodes_to_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let mut wire = Vec::new();
            for frame in &frames {
                encode(frame, &mut wire);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let mut decoder = Decoder::new(300);
            let mut decoded = Vec::new();
            for pair in points.windows(2) {
                decoder.extend(&wire[pair[0]..pair[1]]);
                decoded.extend(decode_all(&mut decoder).unwrap());
            }
            prop_assert_eq!(decoded, frames);
            prop_assert_eq!(decoder.buffered(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut decoder = Decoder::new(50);
            decoder.extend(&bytes);
            let _ = decode_all(&mut decoder);
        }
    }
}
