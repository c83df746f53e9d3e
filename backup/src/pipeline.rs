//! The byte path of a backup, as streams: up, a source (a dump's stdout, a volume's tar) →
//! zstd (with its frame checksum) → optional sealing ([`crate::crypt`]) → SHA-256 and size →
//! an S3 multipart upload in 8 MiB parts, at most 4 in flight; down, the object → SHA-256 →
//! opening → zstd → a sink. Memory stays bounded by the part size whatever the data size, and
//! nothing touches the server's disk.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use async_compression::Level;
use async_compression::tokio::bufread::{ZstdDecoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::crypt::{Key, Opener, SEGMENT, Sealer};
use crate::manifest::Part;
use crate::store::Store;

const PART_SIZE: usize = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 4;

/// An upload whose bytes are all sent but which is not complete yet: the caller commits it
/// once the source says it succeeded (a dump's exit code), or aborts it, so a failed dump never
/// becomes an object.
pub struct Pending {
    writer: WriteMultipart,
    pub part: Part,
}

impl Pending {
    pub async fn commit(self, store: &Store) -> Result<Part> {
        self.writer
            .finish()
            .await
            .map_err(|err| store.explain(err))?;
        Ok(self.part)
    }

    pub async fn abort(self) {
        if let Err(err) = self.writer.abort().await {
            tracing::warn!("could not abort an unfinished upload: {err}");
        }
    }
}

/// Compress, seal and send `source` to `object` of backup `id`.
pub async fn upload(
    store: &Store,
    id: &str,
    name: &str,
    object: &str,
    source: impl AsyncRead + Unpin + Send,
    level: i32,
    key: Option<&Key>,
) -> Result<Pending> {
    let path = store.path(id, object);
    let upload = store
        .s3
        .put_multipart(&path)
        .await
        .map_err(|err| store.explain(err))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    match send(store, &mut writer, source, level, key).await {
        Ok((size, raw_size, sha256)) => Ok(Pending {
            writer,
            part: Part {
                name: name.to_string(),
                object: object.to_string(),
                size,
                raw_size,
                sha256,
            },
        }),
        Err(err) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!("could not abort the upload of `{path}`: {abort}");
            }
            Err(err)
        }
    }
}

async fn send(
    store: &Store,
    writer: &mut WriteMultipart,
    source: impl AsyncRead + Unpin + Send,
    level: i32,
    key: Option<&Key>,
) -> Result<(u64, u64, String)> {
    let raw = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: source,
        count: raw.clone(),
    };
    let mut compressed = ZstdEncoder::with_quality_and_params(
        BufReader::with_capacity(256 * 1024, counted),
        Level::Precise(level),
        &[CParameter::checksum_flag(true)],
    );
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut emit = |bytes: &[u8], writer: &mut WriteMultipart| {
        hasher.update(bytes);
        size += bytes.len() as u64;
        writer.write(bytes);
    };
    let mut sealer = key.map(|key| {
        let (sealer, header) = Sealer::new(key);
        emit(&header, writer);
        sealer
    });
    let mut current = vec![0u8; SEGMENT];
    let mut next = vec![0u8; SEGMENT];
    let mut filled = fill(&mut compressed, &mut current).await?;
    loop {
        writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|err| store.explain(err))?;
        let more = fill(&mut compressed, &mut next).await?;
        let last = more == 0;
        match sealer.as_mut() {
            Some(sealer) if last => emit(&sealer.seal_last(&current[..filled]), writer),
            Some(sealer) => emit(&sealer.seal(&current[..filled]), writer),
            None => emit(&current[..filled], writer),
        }
        if last {
            break;
        }
        std::mem::swap(&mut current, &mut next);
        filled = more;
    }
    let sha256 = hex(&hasher.finalize());
    Ok((size, raw.load(Ordering::Relaxed), sha256))
}

/// Read until `buffer` is full or the source ends; the count read.
async fn fill(source: &mut (impl AsyncRead + Unpin), buffer: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = source
            .read(&mut buffer[filled..])
            .await
            .context("Reading the backup's source failed")?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// The plaintext of `part` of backup `id`: checked against its SHA-256 and size, opened if
/// sealed, decompressed. A mismatch is a read error at the end of the stream, so a consumer
/// that reads to the end learns of it.
pub async fn download(
    store: &Store,
    id: &str,
    part: &Part,
    key: Option<&Key>,
) -> Result<Pin<Box<dyn AsyncRead + Send>>> {
    let path: Path = store.path(id, &part.object);
    let object = store
        .s3
        .get(&path)
        .await
        .map_err(|err| store.explain(err))?;
    let place = store.place.clone();
    let chunks = object
        .into_stream()
        .map(move |chunk| chunk.map_err(|err| std::io::Error::other(format!("{place}: {err}"))));
    let checked = Checked::new(chunks, part.clone(), key.cloned());
    let reader = StreamReader::new(checked.into_stream());
    let mut decoder = ZstdDecoder::new(BufReader::with_capacity(256 * 1024, reader));
    // Read to the object's end, past the frame, so the SHA-256 check at its end always runs.
    decoder.multiple_members(true);
    Ok(Box::pin(decoder))
}

/// Read `part` whole, checking everything that can be checked without restoring it: the
/// stored bytes' SHA-256, the seal, and zstd's own checksum. Returns the plaintext size.
pub async fn check(store: &Store, id: &str, part: &Part, key: Option<&Key>) -> Result<u64> {
    let reader = download(store, id, part, key).await?;
    let mut stream = ReaderStream::with_capacity(reader, 256 * 1024);
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.with_context(|| format!("`{}` of backup {id} is damaged", part.object))?;
        size += chunk.len() as u64;
    }
    if size != part.raw_size {
        bail!(
            "`{}` of backup {id} holds {size} bytes where its manifest says {}",
            part.object,
            part.raw_size
        );
    }
    Ok(size)
}

/// The stored bytes of a part, hashed and opened on the way.
struct Checked<S> {
    inner: S,
    part: Part,
    hasher: Sha256,
    size: u64,
    opener: Option<Opener>,
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin + Send + 'static> Checked<S> {
    fn new(inner: S, part: Part, key: Option<Key>) -> Self {
        Checked {
            inner,
            part,
            hasher: Sha256::new(),
            size: 0,
            opener: key.as_ref().map(Opener::new),
        }
    }

    fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
        futures_util::stream::try_unfold(Some(self), |state| async move {
            let Some(mut state) = state else {
                return Ok(None);
            };
            match state.inner.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    state.hasher.update(&chunk);
                    state.size += chunk.len() as u64;
                    let plain = match state.opener.as_mut() {
                        Some(opener) => {
                            Bytes::from(opener.push(&chunk).map_err(std::io::Error::other)?)
                        }
                        None => chunk,
                    };
                    Ok(Some((plain, Some(state))))
                }
                None => {
                    let digest = hex(&state.hasher.clone().finalize());
                    if state.size != state.part.size || digest != state.part.sha256 {
                        return Err(std::io::Error::other(format!(
                            "`{}` does not match its manifest (stored {} bytes with SHA-256 {digest}, expected {} bytes with {}): the object was damaged or replaced",
                            state.part.object, state.size, state.part.size, state.part.sha256
                        )));
                    }
                    let tail = match state.opener.as_mut() {
                        Some(opener) => opener.finish().map_err(std::io::Error::other)?,
                        None => Vec::new(),
                    };
                    Ok(Some((Bytes::from(tail), None)))
                }
            }
        })
    }
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        poll
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
