//! Client side of a CTI link: connect, send requests, read lines. Only bytes move here;
//! what a message means is decided by its reader (`processors::monitor::session`).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::cti::{parse_message, to_line, Message, Request, MAX_LINE};

/// Why a link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect { endpoint: String, source: std::io::Error },
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the T-Server closed the link")]
    Closed,
    #[error("line longer than {MAX_LINE} bytes: framing lost")]
    FramingLost,
    #[error("unexpected answer to open: {0}")]
    Handshake(String),
}

/// Reads `\n`-terminated lines of at most [`MAX_LINE`] bytes. Cancel-safe: a line read
/// in part when its future is dropped is completed by the next call.
pub struct LineReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    /// The last call returned a whole line: the next one starts afresh.
    complete: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Read lines from `reader`.
    pub fn new(reader: R) -> Self {
        LineReader { reader: BufReader::with_capacity(64 * 1024, reader), line: Vec::new(), complete: false }
    }

    /// The next line, without its `\n`. A line longer than [`MAX_LINE`] is
    /// [`LinkError::FramingLost`]; the end of the stream is [`LinkError::Closed`].
    pub async fn next_line(&mut self) -> Result<&[u8], LinkError> {
        if self.complete {
            self.line.clear();
            self.complete = false;
        }
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Err(LinkError::Closed);
            }
            let (take, found) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if self.line.len() + take > MAX_LINE {
                return Err(LinkError::FramingLost);
            }
            self.line.extend_from_slice(&buf[..take]);
            self.reader.consume(take + usize::from(found));
            if found {
                self.complete = true;
                return Ok(&self.line);
            }
        }
    }

    /// Bytes already read from the socket and not yet returned as lines.
    pub fn buffered(&self) -> usize {
        self.reader.buffer().len()
    }
}

/// Reading half of a link.
pub type LinkReader = LineReader<OwnedReadHalf>;

/// Writing half of a link: requests are queued, then written together by
/// [`LinkWriter::flush`].
pub struct LinkWriter {
    writer: OwnedWriteHalf,
    next_ref: u64,
    queued: Vec<u8>,
}

/// Open a link: connect, send `RequestOpen`, wait for `EventServerInfo`; the server's
/// name if it gave one.
pub async fn open(endpoint: &str, client_name: &str, within: Duration) -> Result<(LinkWriter, LinkReader, Option<String>), LinkError> {
    let stream = tokio::time::timeout(within, TcpStream::connect(endpoint))
        .await
        .map_err(|_| LinkError::ConnectTimeout(endpoint.to_string()))?
        .map_err(|source| LinkError::Connect { endpoint: endpoint.to_string(), source })?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut writer = LinkWriter { writer: w, next_ref: 1, queued: Vec::new() };
    let mut reader = LineReader::new(r);
    let open = writer.queue(|ref_id| Request::RequestOpen { ref_id, client_name: client_name.to_string() });
    writer.flush().await?;
    let answer = tokio::time::timeout(within, async {
        loop {
            let line = reader.next_line().await?;
            // Anything before the answer (an event, an unusable line) is not the answer.
            if let Ok(m) = parse_message(line) {
                return Ok::<_, LinkError>(m);
            }
        }
    })
    .await
    .map_err(|_| LinkError::ConnectTimeout(endpoint.to_string()))??;
    match answer {
        Message::EventServerInfo { ref_id, server, .. } if ref_id == open => Ok((writer, reader, server)),
        other => Err(LinkError::Handshake(format!("{other:?}"))),
    }
}

impl LinkWriter {
    /// Queue a request built with the next reference id; returns that id.
    pub fn queue(&mut self, build: impl FnOnce(u64) -> Request) -> u64 {
        let ref_id = self.next_ref;
        self.next_ref += 1;
        self.queued.extend_from_slice(to_line(&build(ref_id)).as_bytes());
        ref_id
    }

    /// Write every queued request.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        if !self.queued.is_empty() {
            self.writer.write_all(&self.queued).await?;
            self.queued.clear();
        }
        Ok(())
    }

    /// Queue a request and write it at once; returns its reference id.
    pub async fn send(&mut self, build: impl FnOnce(u64) -> Request) -> Result<u64, LinkError> {
        let ref_id = self.queue(build);
        self.flush().await?;
        Ok(ref_id)
    }

    /// Are requests queued and not yet written?
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_split_anywhere_are_joined_and_over_long_lines_lose_framing() {
        let (mut w, r) = tokio::io::duplex(256);
        let mut lines = LineReader::new(r);
        let writer = tokio::spawn(async move {
            w.write_all(b"{\"a\":").await.unwrap();
            w.write_all(b"1}\n\n{\"b\":2}\r\n").await.unwrap();
            w.write_all(&vec![b'x'; MAX_LINE + 1]).await.unwrap();
        });
        assert_eq!(lines.next_line().await.unwrap(), b"{\"a\":1}");
        assert_eq!(lines.next_line().await.unwrap(), b"");
        assert_eq!(lines.next_line().await.unwrap(), b"{\"b\":2}\r");
        assert!(matches!(lines.next_line().await, Err(LinkError::FramingLost)));
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_accepted_and_the_end_is_closed() {
        let (mut w, r) = tokio::io::duplex(1024);
        let mut lines = LineReader::new(r);
        tokio::spawn(async move {
            let mut line = vec![b'y'; MAX_LINE];
            line.push(b'\n');
            w.write_all(&line).await.unwrap();
        });
        assert_eq!(lines.next_line().await.unwrap().len(), MAX_LINE);
        assert!(matches!(lines.next_line().await, Err(LinkError::Closed)));
    }

    #[tokio::test]
    async fn a_read_cancelled_mid_line_loses_nothing() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut lines = LineReader::new(r);
        w.write_all(b"{\"part").await.unwrap();
        // The read takes half a line and waits for more; another branch wins and the read
        // is dropped, as in the monitor's `select!`.
        tokio::select! {
            biased;
            _ = lines.next_line() => panic!("half a line is not a line"),
            _ = std::future::ready(()) => {}
        }
        w.write_all(b"\":1}\n").await.unwrap();
        assert_eq!(lines.next_line().await.unwrap(), b"{\"part\":1}");
    }
}
