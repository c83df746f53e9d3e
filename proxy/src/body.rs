//! Bodies that flow through the proxy: request bodies on their way to a target (streamed with an
//! inactivity timeout, or buffered), and response bodies on their way to the client (streamed,
//! buffered, or generated). Buffers keep up to `--buffer-memory` bytes in memory and spill the rest
//! to an unnamed temporary file, with a cap on the total.

use std::io::SeekFrom;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::time::Sleep;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Size of the chunks read back from a spilled buffer.
const FILE_CHUNK: usize = 64 * 1024;

/// An incoming body that fails when no data arrives for `timeout` (slow or stalled clients).
/// The timer is only created when the body actually waits.
#[derive(Debug)]
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
        }
    }
}

/// The client stopped sending its body.
#[derive(Debug, thiserror::Error)]
#[error("no data from the client for {0:?}")]
pub struct BodyTimeout(Duration);

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(sleep.as_mut().poll(context));
                Poll::Ready(Some(Err(BodyTimeout(timeout).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body read whole: the in-memory part, then the spilled part.
#[derive(Debug)]
pub struct Buffered {
    memory: Bytes,
    spill: Option<tokio::fs::File>,
    length: u64,
    sent_memory: bool,
    read_buffer: BytesMut,
}

/// Why buffering a body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("body larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the body failed: {0}")]
    Read(BoxError),
    #[error("spilling the body to a temporary file failed: {0}")]
    Spill(std::io::Error),
}

impl Buffered {
    /// Reads `body` whole, keeping `memory_limit` bytes in memory and the rest in a temporary
    /// file; fails with [`BufferError::TooLarge`] beyond `max` (0 = no limit).
    pub async fn read<B>(mut body: B, memory_limit: u64, max: u64) -> Result<Self, BufferError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        if max > 0 && body.size_hint().lower() > max {
            return Err(BufferError::TooLarge(max));
        }
        let mut memory = BytesMut::new();
        let mut spill: Option<tokio::fs::File> = None;
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| BufferError::Read(error.into()))?;
            let Ok(data) = frame.into_data() else {
                continue; // Trailers are dropped, as kamal-proxy's buffer does.
            };
            length += data.len() as u64;
            if max > 0 && length > max {
                return Err(BufferError::TooLarge(max));
            }
            let room = memory_limit.saturating_sub(memory.len() as u64) as usize;
            if spill.is_none() && data.len() <= room {
                memory.extend_from_slice(&data);
                continue;
            }
            let (in_memory, rest) = data.split_at(room.min(data.len()));
            memory.extend_from_slice(in_memory);
            if spill.is_none() {
                let file = tempfile::tempfile().map_err(BufferError::Spill)?;
                spill = Some(tokio::fs::File::from_std(file));
            }
            if let Some(file) = spill.as_mut() {
                file.write_all(rest).await.map_err(BufferError::Spill)?;
            }
        }
        if let Some(file) = spill.as_mut() {
            file.flush().await.map_err(BufferError::Spill)?;
            file.seek(SeekFrom::Start(0))
                .await
                .map_err(BufferError::Spill)?;
        }
        Ok(Self {
            memory: memory.freeze(),
            spill,
            length,
            sent_memory: false,
            read_buffer: BytesMut::new(),
        })
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }
}

impl Body for Buffered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.sent_memory {
            this.sent_memory = true;
            if !this.memory.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.memory)))));
            }
        }
        let Some(file) = this.spill.as_mut() else {
            return Poll::Ready(None);
        };
        this.read_buffer.reserve(FILE_CHUNK);
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(file),
            context,
            &mut this.read_buffer
        ));
        match read {
            Ok(0) => {
                this.spill = None;
                Poll::Ready(None)
            }
            Ok(_) => Poll::Ready(Some(Ok(Frame::data(this.read_buffer.split().freeze())))),
            Err(error) => Poll::Ready(Some(Err(error.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.sent_memory && self.spill.is_none() || self.length == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.sent_memory {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.length)
        }
    }
}

/// A request body on its way to a target: streamed with an inactivity timeout, or buffered.
pub type RequestBody = http_body_util::Either<IdleTimeout<Incoming>, Buffered>;

/// What a response body is made of.
#[derive(Debug)]
pub enum ResponseContent {
    Empty,
    Full(Option<Bytes>),
    Upstream(Incoming),
    Buffered(Buffered),
}

impl Body for ResponseContent {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseContent::Empty => Poll::Ready(None),
            ResponseContent::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseContent::Upstream(body) => {
                Pin::new(body).poll_frame(context).map_err(Into::into)
            }
            ResponseContent::Buffered(body) => Pin::new(body).poll_frame(context),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseContent::Empty => true,
            ResponseContent::Full(bytes) => bytes.is_none(),
            ResponseContent::Upstream(body) => body.is_end_stream(),
            ResponseContent::Buffered(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseContent::Empty => SizeHint::with_exact(0),
            ResponseContent::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseContent::Upstream(body) => body.size_hint(),
            ResponseContent::Buffered(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(
        parts: Vec<&'static [u8]>,
    ) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        StreamBody::new(futures_util::stream::iter(parts.into_iter().map(|part| {
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(part)))
        })))
    }

    #[tokio::test]
    async fn buffers_in_memory_and_spills_beyond_the_memory_limit() {
        let body = chunks(vec![b"hello ", b"big ", b"world"]);
        let buffered = Buffered::read(body, 8, 0).await.unwrap();
        assert_eq!(buffered.len(), 15);
        assert!(buffered.spill.is_some(), "the part beyond 8 bytes spills");
        let collected = buffered.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello big world");
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_cap() {
        let body = chunks(vec![b"12345", b"67890"]);
        assert!(matches!(
            Buffered::read(body, 1024, 8).await,
            Err(BufferError::TooLarge(8))
        ));
        let known = Full::new(Bytes::from_static(b"0123456789"));
        assert!(matches!(
            Buffered::read(known, 1024, 8).await,
            Err(BufferError::TooLarge(8))
        ));
        let empty = Buffered::read(chunks(vec![]), 1024, 8).await.unwrap();
        assert!(empty.is_empty());
    }
}
