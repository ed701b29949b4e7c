//! The I/O edge to Kamailio: JSON-RPC 2.0 over HTTP POST (xhttp + jsonrpcs, `POST
//! http://127.0.0.1:8449/RPC` by default) and the evapi reader task.
//!
//! The reader never applies back-pressure to Kamailio: evapi writes with a blocking
//! `write()` from one dispatcher, so a client that stops reading stalls all SIP traffic
//! (`docs/sip-draft.md`, "evapi behaviour"). It reads continuously into its own bounded
//! queue and hands events to a bounded channel; when the consumer falls more than
//! `max_pending` events behind, it closes the connection (harmless to Kamailio) and
//! returns [`SipError::Overrun`]: the runner reconnects and resynchronises.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::event::{decode, Decoded};
use super::netstring::{Decoder, DEFAULT_MAX_FRAME};
use super::resync::{Dialog, UlDump};
use super::SipError;

/// Largest JSON-RPC reply read (a `dlg.list` of 300 dialogs is about 300 KB).
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

/// JSON-RPC client of one Kamailio.
#[derive(Clone, Debug)]
pub struct RpcClient {
    url: String,
    authority: String,
    path: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    result: serde_json::Value,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl RpcClient {
    /// A client for `url` (`http://host:port/path`); every call fails after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, SipError> {
        let invalid = |message: &str| SipError::Rpc { method: "-".into(), url: url.into(), message: message.into() };
        let uri: hyper::Uri = url.parse().map_err(|_| invalid("the URL is not valid"))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("the URL has no host"))?;
        let authority = if authority.port().is_some() { authority.to_string() } else { format!("{}:80", authority.host()) };
        Ok(RpcClient { url: url.to_string(), authority, path: uri.path().to_string(), timeout })
    }

    /// Calls `method` with positional `params` and returns its `result` (null when absent).
    pub async fn call(&self, method: &str, params: Vec<serde_json::Value>) -> Result<serde_json::Value, SipError> {
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        match tokio::time::timeout(self.timeout, self.round_trip(method, params)).await {
            Ok(result) => result,
            Err(_) => Err(SipError::Timeout { method: method.into(), url: self.url.clone(), timeout_ms }),
        }
    }

    /// `dlg.list`: every dialog Kamailio holds, ended ones (state 5) included.
    pub async fn dlg_list(&self) -> Result<Vec<Dialog>, SipError> {
        self.typed("dlg.list").await.map(Option::unwrap_or_default)
    }

    /// `ul.dump`: every registration.
    pub async fn ul_dump(&self) -> Result<UlDump, SipError> {
        self.typed("ul.dump").await.map(Option::unwrap_or_default)
    }

    async fn typed<T: serde::de::DeserializeOwned>(&self, method: &str) -> Result<Option<T>, SipError> {
        let result = self.call(method, Vec::new()).await?;
        if result.is_null() {
            return Ok(None);
        }
        serde_json::from_value(result).map(Some).map_err(|e| self.error(method, format!("the result is not the expected shape: {e}")))
    }

    fn error(&self, method: &str, message: String) -> SipError {
        SipError::Rpc { method: method.into(), url: self.url.clone(), message }
    }

    async fn round_trip(&self, method: &str, params: Vec<serde_json::Value>) -> Result<serde_json::Value, SipError> {
        let body = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
        let stream = TcpStream::connect(&self.authority).await.map_err(|e| self.error(method, format!("cannot connect: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.error(method, format!("HTTP handshake: {e}")))?;
        let connection = tokio::spawn(connection);
        let request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.error(method, format!("cannot build the request: {e}")))?;
        let response = sender.send_request(request).await.map_err(|e| self.error(method, format!("HTTP request: {e}")))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| self.error(method, format!("reading the reply: {e}")))?
            .to_bytes();
        connection.abort();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).trim().to_string();
            return Err(self.error(method, format!("HTTP {status}: {text}")));
        }
        let reply: Reply = serde_json::from_slice(&bytes).map_err(|e| self.error(method, format!("the reply is not JSON-RPC: {e}")))?;
        if let Some(error) = reply.error {
            return Err(self.error(method, format!("error {error}")));
        }
        Ok(reply.result)
    }
}

/// Where and how to read evapi.
#[derive(Clone, Debug)]
pub struct EvapiConfig {
    /// `host:port` of evapi (`127.0.0.1:8448` by default).
    pub addr: String,
    /// Largest netstring accepted.
    pub max_frame: usize,
    /// Events read but not yet taken by the consumer before the connection is dropped.
    pub max_pending: usize,
}

impl EvapiConfig {
    /// Defaults for `addr`: 64 KB frames, 100,000 pending events.
    pub fn new(addr: impl Into<String>) -> Self {
        EvapiConfig { addr: addr.into(), max_frame: DEFAULT_MAX_FRAME, max_pending: 100_000 }
    }
}

/// Why the reader stopped without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvapiEnd {
    /// Kamailio closed the connection (stop or crash).
    Closed,
    /// The shutdown future completed.
    Shutdown,
    /// The receiver of the channel was dropped.
    ConsumerGone,
}

/// Connects to evapi and sends every decoded payload to `tx` (the `hello` first) until
/// Kamailio closes the connection, `shutdown` completes, or an error.
///
/// Reading never waits for `tx`: see the module documentation.
pub async fn read_evapi(config: &EvapiConfig, tx: mpsc::Sender<Decoded>, shutdown: impl Future<Output = ()>) -> Result<EvapiEnd, SipError> {
    let addr = config.addr.clone();
    let mut stream = TcpStream::connect(&addr).await.map_err(|source| SipError::Connect { addr: addr.clone(), source })?;
    tracing::debug!(%addr, "Connected to Kamailio evapi.");
    let mut decoder = Decoder::new(config.max_frame);
    let mut pending: VecDeque<Decoded> = VecDeque::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut eof = false;
    tokio::pin!(shutdown);
    loop {
        if eof && pending.is_empty() {
            return Ok(EvapiEnd::Closed);
        }
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(EvapiEnd::Shutdown),
            permit = tx.reserve(), if !pending.is_empty() => {
                let Ok(permit) = permit else { return Ok(EvapiEnd::ConsumerGone) };
                if let Some(item) = pending.pop_front() {
                    permit.send(item);
                }
            }
            read = stream.read(&mut buf), if !eof => {
                let n = read.map_err(|source| SipError::Io { addr: addr.clone(), source })?;
                if n == 0 {
                    if decoder.buffered() > 0 {
                        tracing::warn!(%addr, bytes = decoder.buffered(), "Kamailio closed evapi in the middle of an event; its bytes are dropped.");
                    }
                    eof = true;
                    continue;
                }
                decoder.extend(&buf[..n]);
                while let Some(frame) = decoder.next_frame().map_err(|source| SipError::Framing { addr: addr.clone(), source })? {
                    pending.push_back(decode(&frame));
                }
                while !pending.is_empty() {
                    match tx.try_reserve() {
                        Ok(permit) => {
                            if let Some(item) = pending.pop_front() {
                                permit.send(item);
                            }
                        }
                        Err(mpsc::error::TrySendError::Full(())) => break,
                        Err(mpsc::error::TrySendError::Closed(())) => return Ok(EvapiEnd::ConsumerGone),
                    }
                }
                if pending.len() > config.max_pending {
                    return Err(SipError::Overrun { max: config.max_pending });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::super::event::samples::{BUSY, INSTANCE};
    use super::super::netstring::encode;
    use super::*;

    async fn listener() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        (listener, addr)
    }

    #[tokio::test]
    async fn reader_delivers_events_split_across_writes_then_ends_on_close() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut wire = Vec::new();
            let hello = format!(r#"{{"type":"hello","last_seq":17,"ts_ms":1,"instance":"{INSTANCE}"}}"#);
            encode(hello.as_bytes(), &mut wire);
            for json in BUSY {
                encode(json.as_bytes(), &mut wire);
            }
            encode(b"{\"type\":\"new_kind\",\"seq\":20}", &mut wire);
            for chunk in wire.chunks(7) {
                socket.write_all(chunk).await.unwrap();
                socket.flush().await.unwrap();
            }
        });
        let (tx, mut rx) = mpsc::channel(2);
        let config = EvapiConfig::new(addr);
        let reader = tokio::spawn(async move { read_evapi(&config, tx, std::future::pending()).await });
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            got.push(item);
        }
        assert_eq!(reader.await.unwrap().unwrap(), EvapiEnd::Closed);
        server.await.unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(matches!(&got[0], Decoded::Hello(h) if h.last_seq == 17));
        assert!(matches!(&got[1], Decoded::Event(e) if e.seq == 18));
        assert!(matches!(&got[2], Decoded::Event(e) if e.seq == 19));
        assert_eq!(got[3], Decoded::Unknown { type_name: "new_kind".into(), seq: Some(20) });
    }

    #[tokio::test]
    async fn reader_keeps_reading_while_the_consumer_lags_and_gives_up_past_the_bound() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut wire = Vec::new();
            for seq in 1..=50 {
                encode(format!(r#"{{"type":"x","seq":{seq}}}"#).as_bytes(), &mut wire);
            }
            socket.write_all(&wire).await.unwrap();
            // keep the connection open: only the overrun can end the reader
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
        });
        // a channel of 1 that nobody reads
        let (tx, _rx) = mpsc::channel(1);
        let config = EvapiConfig { max_pending: 10, ..EvapiConfig::new(addr) };
        let result = read_evapi(&config, tx, std::future::pending()).await;
        assert!(matches!(result, Err(SipError::Overrun { max: 10 })), "{result:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn reader_reports_lost_framing_and_shutdown() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"3:abc;").await.unwrap();
            let (mut second, _) = listener.accept().await.unwrap();
            let mut rest = Vec::new();
            let _ = second.read_to_end(&mut rest).await;
        });
        let (tx, _rx) = mpsc::channel(8);
        let config = EvapiConfig::new(addr);
        let error = read_evapi(&config, tx.clone(), std::future::pending()).await.unwrap_err();
        assert!(error.to_string().contains("lost its framing"), "{error}");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            read_evapi(&config, tx, async {
                let _ = stopped.await;
            })
            .await
        });
        stop.send(()).unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), EvapiEnd::Shutdown);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn rpc_client_posts_json_rpc_and_reads_errors() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for reply in [
                super::super::resync::samples::DLG_LIST_HOLD.to_string(),
                r#"{"jsonrpc":"2.0","error":{"code":500,"message":"command not found"},"id":1}"#.to_string(),
            ] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // read until the whole body announced by Content-Length is in
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                            .unwrap();
                        if body.len() >= len {
                            requests.push(text);
                            break;
                        }
                    }
                    assert!(n > 0, "client closed early");
                }
                let response =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}", reply.len());
                socket.write_all(response.as_bytes()).await.unwrap();
            }
            requests
        });
        let client = RpcClient::new(&format!("http://{addr}/RPC"), Duration::from_secs(5)).unwrap();
        let dialogs = client.dlg_list().await.unwrap();
        assert_eq!(dialogs.len(), 1);
        assert_eq!(dialogs[0].call_id, "1-6035@127.0.0.1");
        let error = client.ul_dump().await.unwrap_err();
        assert!(error.to_string().contains("command not found"), "{error}");
        let requests = server.await.unwrap();
        assert!(requests[0].starts_with("POST /RPC HTTP/1.1\r\n"), "{}", requests[0]);
        let bodies: Vec<serde_json::Value> =
            requests.iter().map(|r| serde_json::from_str(r.split_once("\r\n\r\n").unwrap().1).unwrap()).collect();
        assert_eq!(bodies[0], serde_json::json!({"jsonrpc": "2.0", "method": "dlg.list", "params": [], "id": 1}));
        assert_eq!(bodies[1]["method"], "ul.dump");
    }

    #[tokio::test]
    async fn rpc_client_times_out() {
        // accepts but never answers
        let (listener, addr) = listener().await;
        let _server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let client = RpcClient::new(&format!("http://{addr}/RPC"), Duration::from_millis(300)).unwrap();
        let error = client.dlg_list().await.unwrap_err();
        assert!(matches!(error, SipError::Timeout { timeout_ms: 300, .. }), "{error}");
    }

    #[test]
    fn rpc_urls() {
        let client = RpcClient::new("http://127.0.0.1:8449/RPC", Duration::from_secs(1)).unwrap();
        assert_eq!((client.authority.as_str(), client.path.as_str()), ("127.0.0.1:8449", "/RPC"));
        assert!(RpcClient::new("https://127.0.0.1/RPC", Duration::from_secs(1)).is_err());
        assert!(RpcClient::new("not a url", Duration::from_secs(1)).is_err());
        assert_eq!(RpcClient::new("http://localhost/RPC", Duration::from_secs(1)).unwrap().authority, "localhost:80");
    }
}
