//! The HTTP body types the handlers speak, independent of the server that carries them
//! (hyper in `berth serve`, `lambda_http` in a function).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use http_body::{Frame, SizeHint};

use crate::storage::ByteStream;

/// A response body: nothing, one buffer, or a stream of blob bytes of known length.
pub enum ResponseBody {
    /// no body (HEAD, 201, 202, 204)
    Empty,
    /// a small buffered body (JSON, manifests)
    Full(Option<Bytes>),
    /// streamed content; the length goes in `Content-Length`
    Stream(ByteStream, u64),
}

impl ResponseBody {
    /// A buffered body.
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Some(bytes.into()))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(s, _) => s.as_mut().poll_next(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Stream(_, n) => *n == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Stream(_, n) => SizeHint::with_exact(*n),
        }
    }
}

/// The request type every handler takes: headers plus a streamed body.
pub type Request = http::Request<ByteStream>;
/// The response type every handler returns.
pub type Response = http::Response<ResponseBody>;

/// An empty request body (for tests and body-less requests).
pub fn empty_stream() -> ByteStream {
    Box::pin(futures_util::stream::empty())
}

/// A request body made of one buffer (for tests and for Lambda events, which arrive whole).
pub fn once_stream(bytes: impl Into<Bytes>) -> ByteStream {
    let bytes: Bytes = bytes.into();
    Box::pin(futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) }))
}

/// Why a small request body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadBodyError {
    /// The body is longer than the limit.
    #[error("the body exceeds {limit} bytes")]
    TooLarge {
        /// the limit in bytes
        limit: usize,
    },
    /// The body stream failed.
    #[error("reading the body: {0}")]
    Io(#[from] std::io::Error),
    /// The body did not arrive whole within [`SMALL_BODY_DEADLINE`].
    #[error("the body did not arrive within {} s", SMALL_BODY_DEADLINE.as_secs())]
    TooSlow,
}

/// How long a small body may take to arrive in all: a client trickling a token form or a
/// manifest a byte at a time holds its connection no longer than this (a stall timeout alone
/// restarts with every byte).
pub const SMALL_BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a body that is small by contract (a manifest, a JSON request, a token form) into one
/// buffer, refusing it as soon as it passes `limit` or [`SMALL_BODY_DEADLINE`] passes; blob
/// bodies are never read this way.
pub async fn read_capped(mut body: ByteStream, limit: usize) -> Result<Bytes, ReadBodyError> {
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > limit {
                return Err(ReadBodyError::TooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(SMALL_BODY_DEADLINE, read).await.unwrap_or(Err(ReadBodyError::TooSlow))
}
