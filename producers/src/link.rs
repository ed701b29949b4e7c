//! Client side of a CTI link: connect, send requests, read messages.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::cti::{to_line, Message, Request, MAX_LINE};

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

/// Reading half of a link.
pub struct LinkReader {
    reader: BufReader<OwnedReadHalf>,
    line: String,
    /// Lines that were not valid messages (logged by the caller).
    pub malformed: u64,
}

/// Writing half of a link.
pub struct LinkWriter {
    writer: OwnedWriteHalf,
    next_ref: u64,
}

/// Open a link: connect, send `RequestOpen`, wait for `EventServerInfo`.
pub async fn open(endpoint: &str, client_name: &str, within: Duration) -> Result<(LinkWriter, LinkReader, String), LinkError> {
    let stream = tokio::time::timeout(within, TcpStream::connect(endpoint))
        .await
        .map_err(|_| LinkError::ConnectTimeout(endpoint.to_string()))?
        .map_err(|source| LinkError::Connect { endpoint: endpoint.to_string(), source })?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut writer = LinkWriter { writer: w, next_ref: 1 };
    let mut reader = LinkReader { reader: BufReader::new(r), line: String::new(), malformed: 0 };
    writer.send(|ref_id| Request::RequestOpen { ref_id, client_name: client_name.to_string() }).await?;
    let answer = tokio::time::timeout(within, reader.next()).await.map_err(|_| LinkError::ConnectTimeout(endpoint.to_string()))??;
    match answer {
        Message::EventServerInfo { server, .. } => Ok((writer, reader, server)),
        other => Err(LinkError::Handshake(format!("{other:?}"))),
    }
}

impl LinkWriter {
    /// Send a request built with the next reference id; returns that id.
    pub async fn send(&mut self, build: impl FnOnce(u64) -> Request) -> Result<u64, LinkError> {
        let ref_id = self.next_ref;
        self.next_ref += 1;
        self.writer.write_all(to_line(&build(ref_id)).as_bytes()).await?;
        Ok(ref_id)
    }
}

impl LinkReader {
    /// The next well-formed message. Malformed lines are counted and skipped; an
    /// over-long line means framing is lost and ends the link.
    pub async fn next(&mut self) -> Result<Message, LinkError> {
        loop {
            self.line.clear();
            let n = (&mut self.reader).take(MAX_LINE as u64 + 1).read_line(&mut self.line).await?;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            if n > MAX_LINE && !self.line.ends_with('\n') {
                return Err(LinkError::FramingLost);
            }
            match serde_json::from_str::<Message>(self.line.trim_end()) {
                Ok(m) => return Ok(m),
                Err(e) => {
                    self.malformed += 1;
                    tracing::warn!(error = %e, malformed = self.malformed, "Skipping a malformed CTI message.");
                }
            }
        }
    }
}
