//! Bodies that flow through the proxy: request bodies on their way to a target (streamed with an
//! inactivity timeout, or buffered within a total deadline), and response bodies on their way to
//! the client (streamed, buffered, or generated). Buffers keep up to `--buffer-memory` bytes in
//! memory and spill the rest to a file in the spill directory, both within the proxy-wide
//! [`BufferBudget`]. Spill files are written and read in the serving thread, as nginx does with
//! its temporary files: writes land in the page cache, and a blocking pool would cost a thread
//! (and an allocator arena) per concurrent upload.

use std::io::{Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::budget::{BufferBudget, Place};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Size of the chunks read back from a spilled buffer.
const FILE_CHUNK: usize = 64 * 1024;

/// An incoming body that fails when no data arrives for `timeout` (slow or stalled clients), or,
/// with a deadline, when the whole body has not arrived by then (trickling clients). The idle
/// timer is only created when the body actually waits.
#[derive(Debug)]
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            deadline: None,
        }
    }

    /// The body, without the timeouts.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// Also fails once `total` has passed from now, however steadily data arrives.
    #[must_use]
    pub fn with_deadline(mut self, total: Duration) -> Self {
        self.deadline = Some(Box::pin(tokio::time::sleep_until(Instant::now() + total)));
        self
    }
}

/// The client stopped sending its body, or took longer than the deadline for all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    #[error("no data from the client for {}", crate::duration::format_duration(*.0))]
    Idle(Duration),
    #[error("the client did not send the whole body within the deadline")]
    Deadline,
}

impl BodyTimeout {
    /// The metrics label.
    pub fn kind(self) -> &'static str {
        match self {
            BodyTimeout::Idle(_) => "idle",
            BodyTimeout::Deadline => "deadline",
        }
    }
}

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
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(context).is_ready()
        {
            return Poll::Ready(Some(Err(BodyTimeout::Deadline.into())));
        }
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
                Poll::Ready(Some(Err(BodyTimeout::Idle(timeout).into())))
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

/// A body read whole (or, for a response over the disk budget, its beginning): the in-memory
/// part, then the spilled part, then the chunk that did not fit. What it holds is counted in the
/// budget until it is dropped.
#[derive(Debug)]
pub struct Buffered {
    memory: Bytes,
    spill: Option<std::fs::File>,
    tail: Option<Bytes>,
    length: u64,
    sent_memory: bool,
    read_buffer: BytesMut,
    budget: Arc<BufferBudget>,
    held_memory: u64,
    held_disk: u64,
}

/// Why buffering a body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("body larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the body failed: {0}")]
    Read(BoxError),
    #[error("spilling the body to a file failed: {0}")]
    Spill(std::io::Error),
    /// The proxy-wide disk budget is used up; what was read so far is in the buffer.
    #[error("the proxy's buffer space is used up")]
    Exhausted(Box<Buffered>),
}

impl BufferError {
    /// The timeout that ended a read, if one did.
    pub fn timeout(&self) -> Option<BodyTimeout> {
        match self {
            BufferError::Read(error) => error.downcast_ref::<BodyTimeout>().copied(),
            _ => None,
        }
    }
}

impl Buffered {
    /// Reads `body` whole, keeping up to `memory_limit` bytes in memory and the rest in a spill
    /// file, within `budget`; fails with [`BufferError::TooLarge`] beyond `max` (0 = no limit)
    /// and [`BufferError::Exhausted`] when the budget has no room left, leaving the rest of the
    /// body unread in `body`.
    pub async fn read<B>(
        body: &mut B,
        memory_limit: u64,
        max: u64,
        budget: &Arc<BufferBudget>,
    ) -> Result<Self, BufferError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        if max > 0 && body.size_hint().lower() > max {
            return Err(BufferError::TooLarge(max));
        }
        let mut buffer = Self::empty(budget);
        let mut memory = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| BufferError::Read(error.into()))?;
            let Ok(data) = frame.into_data() else {
                continue; // Trailers are dropped, as kamal-proxy's buffer does.
            };
            buffer.length += data.len() as u64;
            if max > 0 && buffer.length > max {
                return Err(BufferError::TooLarge(max));
            }
            let size = data.len() as u64;
            let room = memory_limit.saturating_sub(memory.len() as u64);
            if buffer.spill.is_none()
                && size <= room
                && buffer.grow(&mut memory, data.len(), memory_limit)
            {
                memory.extend_from_slice(&data);
                continue;
            }
            if !budget.take(Place::Disk, size) {
                buffer.length -= size;
                buffer.tail = Some(data);
                buffer.finish(memory)?;
                return Err(BufferError::Exhausted(Box::new(buffer)));
            }
            buffer.held_disk += size;
            if buffer.spill.is_none() {
                buffer.spill = Some(budget.spill_file().map_err(BufferError::Spill)?);
            }
            if let Some(file) = buffer.spill.as_mut() {
                file.write_all(&data).map_err(BufferError::Spill)?;
            }
        }
        buffer.finish(memory)?;
        Ok(buffer)
    }

    /// Makes room in `memory` for `more` bytes, at most `limit` in all, growing it in steps
    /// (doubling) that the budget grants; the budget counts what is allocated, not just what is
    /// filled. False when the budget has no room.
    fn grow(&mut self, memory: &mut Vec<u8>, more: usize, limit: u64) -> bool {
        let needed = memory.len() + more;
        if needed <= memory.capacity() {
            return true;
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let capacity = needed.max(memory.capacity() * 2).min(limit.max(needed));
        let extra = (capacity - memory.capacity()) as u64;
        if !self.budget.take(Place::Memory, extra) {
            return false;
        }
        self.held_memory += extra;
        memory.reserve_exact(capacity - memory.len());
        true
    }

    /// Seals the in-memory part and rewinds the spill file for reading.
    fn finish(&mut self, memory: Vec<u8>) -> Result<(), BufferError> {
        self.memory = Bytes::from(memory);
        if let Some(file) = self.spill.as_mut() {
            file.flush().map_err(BufferError::Spill)?;
            file.seek(SeekFrom::Start(0)).map_err(BufferError::Spill)?;
        }
        Ok(())
    }

    /// Length in bytes of what was read.
    pub fn len(&self) -> u64 {
        self.length + self.tail.as_ref().map_or(0, |tail| tail.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when part of the body is in a spill file.
    pub fn spilled(&self) -> bool {
        self.held_disk > 0
    }

    /// An empty body, for a request sent again whose own body had nothing in it.
    pub fn empty(budget: &Arc<BufferBudget>) -> Self {
        Buffered {
            memory: Bytes::new(),
            spill: None,
            tail: None,
            length: 0,
            sent_memory: false,
            read_buffer: BytesMut::new(),
            budget: Arc::clone(budget),
            held_memory: 0,
            held_disk: 0,
        }
    }

    /// A second copy of a body held whole in memory and not yet sent, for sending the request
    /// again to another target; `None` for one that spilled to disk or ran out of budget. The
    /// copy shares the bytes and holds no budget of its own (this one does).
    pub fn replica(&self) -> Option<Self> {
        if self.spill.is_some() || self.tail.is_some() || self.sent_memory {
            return None;
        }
        let mut copy = Self::empty(&self.budget);
        copy.memory = self.memory.clone();
        copy.length = self.length;
        Some(copy)
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.budget.give(Place::Memory, self.held_memory);
        self.budget.give(Place::Disk, self.held_disk);
    }
}

impl Body for Buffered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.sent_memory {
            this.sent_memory = true;
            if !this.memory.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.memory)))));
            }
        }
        let Some(file) = this.spill.as_mut() else {
            return Poll::Ready(this.tail.take().map(|tail| Ok(Frame::data(tail))));
        };
        this.read_buffer.resize(FILE_CHUNK, 0);
        match file.read(&mut this.read_buffer) {
            Ok(0) => {
                this.spill = None;
                this.read_buffer = BytesMut::new();
                Poll::Ready(this.tail.take().map(|tail| Ok(Frame::data(tail))))
            }
            Ok(read) => {
                this.read_buffer.truncate(read);
                Poll::Ready(Some(Ok(Frame::data(this.read_buffer.split().freeze()))))
            }
            Err(error) => Poll::Ready(Some(Err(error.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        (self.sent_memory || self.memory.is_empty()) && self.spill.is_none() && self.tail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.sent_memory {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.len())
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
    Upstream(crate::upstream::UpstreamBody),
    Buffered(Buffered),
    /// The buffered beginning of a response, then the rest streamed from the target (the disk
    /// budget ran out while buffering it).
    Partial(Box<(Buffered, crate::upstream::UpstreamBody)>),
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
            ResponseContent::Partial(parts) => {
                let (head, rest) = &mut **parts;
                if !head.is_end_stream()
                    && let Some(frame) = ready!(Pin::new(head).poll_frame(context))
                {
                    return Poll::Ready(Some(frame));
                }
                Pin::new(rest).poll_frame(context).map_err(Into::into)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseContent::Empty => true,
            ResponseContent::Full(bytes) => bytes.is_none(),
            ResponseContent::Upstream(body) => body.is_end_stream(),
            ResponseContent::Buffered(body) => body.is_end_stream(),
            ResponseContent::Partial(parts) => parts.0.is_end_stream() && parts.1.is_end_stream(),
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
            ResponseContent::Partial(_) => SizeHint::default(),
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
        let budget = BufferBudget::unlimited();
        let mut body = chunks(vec![b"hello ", b"big ", b"world"]);
        let buffered = Buffered::read(&mut body, 8, 0, &budget).await.unwrap();
        assert_eq!(buffered.len(), 15);
        assert!(buffered.spilled(), "the part beyond 8 bytes spills");
        let collected = buffered.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello big world");
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_cap() {
        let budget = BufferBudget::unlimited();
        let mut body = chunks(vec![b"12345", b"67890"]);
        assert!(matches!(
            Buffered::read(&mut body, 1024, 8, &budget).await,
            Err(BufferError::TooLarge(8))
        ));
        let mut known = Full::new(Bytes::from_static(b"0123456789"));
        assert!(matches!(
            Buffered::read(&mut known, 1024, 8, &budget).await,
            Err(BufferError::TooLarge(8))
        ));
        let empty = Buffered::read(&mut chunks(vec![]), 1024, 8, &budget)
            .await
            .unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn the_shared_budget_spills_early_and_gives_back_on_drop() {
        let directory = tempfile::tempdir().unwrap();
        let budget = Arc::new(BufferBudget::new(directory.path().into(), 8, 1024, None));
        let first = Buffered::read(&mut chunks(vec![b"12345678"]), 1024, 0, &budget)
            .await
            .unwrap();
        assert!(!first.spilled());
        let second = Buffered::read(&mut chunks(vec![b"abc"]), 1024, 0, &budget)
            .await
            .unwrap();
        assert!(
            second.spilled(),
            "the memory budget is used up by the first"
        );
        assert_eq!(budget.used(Place::Disk), 3);
        drop((first, second));
        assert_eq!(budget.used(Place::Memory), 0);
        assert_eq!(budget.used(Place::Disk), 0);
    }

    #[tokio::test]
    async fn an_exhausted_disk_budget_keeps_what_was_read() {
        let directory = tempfile::tempdir().unwrap();
        let budget = Arc::new(BufferBudget::new(directory.path().into(), 4, 4, None));
        let mut body = chunks(vec![b"1234", b"5678", b"9abc", b"def"]);
        let Err(BufferError::Exhausted(head)) = Buffered::read(&mut body, 4, 0, &budget).await
        else {
            panic!("expected the budget to run out");
        };
        let mut head = head.collect().await.unwrap().to_bytes().to_vec();
        let rest = body.collect().await.unwrap().to_bytes();
        head.extend_from_slice(&rest);
        assert_eq!(
            &head[..],
            b"123456789abcdef",
            "nothing lost, nothing reordered"
        );
    }

    #[tokio::test]
    async fn a_deadline_ends_a_trickling_body() {
        let stream = futures_util::stream::unfold(0u8, |count| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x"))),
                count,
            ))
        });
        let body = StreamBody::new(Box::pin(stream));
        let mut body = IdleTimeout::new(body, Duration::from_secs(5))
            .with_deadline(Duration::from_millis(100));
        let error = Buffered::read(&mut body, 1024, 0, &BufferBudget::unlimited())
            .await
            .unwrap_err();
        assert_eq!(error.timeout(), Some(BodyTimeout::Deadline), "{error}");
    }
}
