//! Client side of a CTI link: connect, send requests, read lines. Only bytes move here;
//! what a message means is decided by its reader (`processors::monitor::session`).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

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

    /// The complete lines already read from the socket and not yet returned, without
    /// reading more: what is left when a link is given up. A partial line stays.
    pub fn drain_buffered(&mut self) -> Vec<Vec<u8>> {
        if self.complete {
            self.line.clear();
            self.complete = false;
        }
        let buf = self.reader.buffer();
        let Some(last) = buf.iter().rposition(|b| *b == b'\n') else { return Vec::new() };
        let mut lines: Vec<Vec<u8>> = buf[..last].split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        if let Some(first) = lines.first_mut() {
            let mut joined = std::mem::take(&mut self.line);
            joined.extend_from_slice(first);
            *first = joined;
        }
        self.reader.consume(last + 1);
        lines
    }
}

/// Reading half of a link.
pub type LinkReader = LineReader<OwnedReadHalf>;

/// Writing half of a link: requests are queued, then handed to a writer task by
/// [`LinkWriter::flush`], so a T-Server that does not read never stops its events from
/// being read. Dropping it closes the connection's writing side.
pub struct LinkWriter {
    next_ref: u64,
    queued: Vec<u8>,
    to_task: mpsc::UnboundedSender<Vec<u8>>,
    failure: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

impl Drop for LinkWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Write what arrives, in order; report the first failure.
fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(mut w: W) -> LinkWriter {
    let (to_task, mut from_link) = mpsc::unbounded_channel::<Vec<u8>>();
    let (failed, failure) = watch::channel(None);
    let task = tokio::spawn(async move {
        while let Some(bytes) = from_link.recv().await {
            if let Err(e) = w.write_all(&bytes).await {
                let _ = failed.send(Some(format!("link I/O: {e}")));
                return;
            }
        }
    });
    LinkWriter { next_ref: 1, queued: Vec::new(), to_task, failure, task }
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
    let mut writer = spawn_writer(w);
    let mut reader = LineReader::new(r);
    let open = writer.queue(|ref_id| Request::RequestOpen { ref_id, client_name: client_name.to_string() });
    writer.flush()?;
    // The first line the server sends answers the open (docs/cti-link.md).
    let line = tokio::time::timeout(within, reader.next_line()).await.map_err(|_| LinkError::ConnectTimeout(endpoint.to_string()))??;
    match parse_message(line) {
        Ok(Message::EventServerInfo { ref_id, server, .. }) if ref_id == open => Ok((writer, reader, server)),
        Ok(other) => Err(LinkError::Handshake(format!("{other:?}"))),
        Err(e) => Err(LinkError::Handshake(e.to_string())),
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

    /// Hand every queued request to the writer task; an error if writing already failed.
    pub fn flush(&mut self) -> Result<(), LinkError> {
        if let Some(reason) = self.failure.borrow().clone() {
            return Err(LinkError::Io(std::io::Error::other(reason)));
        }
        if !self.queued.is_empty() {
            let bytes = std::mem::take(&mut self.queued);
            self.to_task.send(bytes).map_err(|_| LinkError::Closed)?;
        }
        Ok(())
    }

    /// Queue a request and hand it to the writer at once; returns its reference id.
    pub fn send(&mut self, build: impl FnOnce(u64) -> Request) -> Result<u64, LinkError> {
        let ref_id = self.queue(build);
        self.flush()?;
        Ok(ref_id)
    }

    /// Resolves when writing failed, with the reason (never otherwise).
    pub async fn failed(&mut self) -> String {
        loop {
            if let Some(reason) = self.failure.borrow_and_update().clone() {
                return reason;
            }
            if self.failure.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
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
    async fn the_complete_lines_left_in_the_buffer_can_be_drained() {
        let (mut w, r) = tokio::io::duplex(1024);
        let mut lines = LineReader::new(r);
        w.write_all(b"first\nsecond\nthird\npart").await.unwrap();
        assert_eq!(lines.next_line().await.unwrap(), b"first");
        assert_eq!(lines.drain_buffered(), [b"second".to_vec(), b"third".to_vec()]);
        w.write_all(b"ial\n").await.unwrap();
        assert_eq!(lines.next_line().await.unwrap(), b"partial", "the partial line stays");
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
