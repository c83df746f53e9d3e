//! Client-side encryption of backup objects: XChaCha20-Poly1305 in the STREAM construction
//! (RustCrypto's `aead::stream`, big-endian 32-bit counter with a last-segment flag), so a
//! stream is encrypted in 64 KiB segments without being held whole, and a truncated, reordered
//! or altered object fails to decrypt instead of restoring garbage.
//!
//! Object layout: `HOISTENC1` (9 bytes), a random 19-byte nonce prefix, then segments of
//! 64 KiB plaintext + 16-byte tag each, the last one shorter and sealed as last.

use base64::Engine;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};

pub const MAGIC: &[u8] = b"HOISTENC1";
pub const NONCE_LEN: usize = 19;
pub const HEADER_LEN: usize = MAGIC.len() + NONCE_LEN;
pub const SEGMENT: usize = 64 * 1024;
pub const TAG: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error(
        "the encryption key is not 32 bytes of base64 (make one with `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("the object is not encrypted by hoist-backup (no HOISTENC1 header)")]
    NotEncrypted,
    #[error(
        "the object does not decrypt with this key: it was altered, truncated or encrypted with another key"
    )]
    Tampered,
}

#[derive(Clone)]
pub struct Key(chacha20poly1305::Key);

impl Key {
    pub fn from_base64(text: &str) -> Result<Key, CryptError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| CryptError::BadKey)?;
        if bytes.len() != 32 {
            return Err(CryptError::BadKey);
        }
        Ok(Key(*chacha20poly1305::Key::from_slice(&bytes)))
    }
}

/// Seals one object, segment by segment.
pub struct Sealer {
    encryptor: Option<EncryptorBE32<XChaCha20Poly1305>>,
}

impl Sealer {
    /// The sealer and the header to write before the first segment.
    pub fn new(key: &Key) -> (Sealer, Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source failed");
        let aead = XChaCha20Poly1305::new(&key.0);
        let encryptor = EncryptorBE32::from_aead(aead, (&nonce).into());
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&nonce);
        (
            Sealer {
                encryptor: Some(encryptor),
            },
            header,
        )
    }

    /// A full segment ([`SEGMENT`] bytes) that is not the last.
    pub fn seal(&mut self, segment: &[u8]) -> Vec<u8> {
        self.encryptor
            .as_mut()
            .expect("seal after seal_last")
            .encrypt_next(segment)
            .expect("XChaCha20-Poly1305 encryption of a 64 KiB segment cannot fail")
    }

    /// The last segment (up to [`SEGMENT`] bytes, possibly empty).
    pub fn seal_last(&mut self, segment: &[u8]) -> Vec<u8> {
        self.encryptor
            .take()
            .expect("seal_last called twice")
            .encrypt_last(segment)
            .expect("XChaCha20-Poly1305 encryption of a 64 KiB segment cannot fail")
    }
}

/// Opens one object fed in arbitrary chunks; holds at most two segments.
pub struct Opener {
    key: Key,
    decryptor: Option<DecryptorBE32<XChaCha20Poly1305>>,
    buffer: Vec<u8>,
    done: bool,
}

impl Opener {
    pub fn new(key: &Key) -> Opener {
        Opener {
            key: key.clone(),
            decryptor: None,
            buffer: Vec::new(),
            done: false,
        }
    }

    /// Plaintext of the segments `chunk` completes (the last one is held back until
    /// [`Opener::finish`] says there is no more).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, CryptError> {
        self.buffer.extend_from_slice(chunk);
        if self.decryptor.is_none() {
            if self.buffer.len() < HEADER_LEN {
                return Ok(Vec::new());
            }
            if &self.buffer[..MAGIC.len()] != MAGIC {
                return Err(CryptError::NotEncrypted);
            }
            let nonce: [u8; NONCE_LEN] = self.buffer[MAGIC.len()..HEADER_LEN]
                .try_into()
                .map_err(|_| CryptError::NotEncrypted)?;
            let aead = XChaCha20Poly1305::new(&self.key.0);
            self.decryptor = Some(DecryptorBE32::from_aead(aead, (&nonce).into()));
            self.buffer.drain(..HEADER_LEN);
        }
        let mut plain = Vec::new();
        let sealed = SEGMENT + TAG;
        // Keep at least one byte past a full segment: only then is that segment not the last.
        while self.buffer.len() > sealed {
            let decryptor = self.decryptor.as_mut().ok_or(CryptError::Tampered)?;
            let segment = decryptor
                .decrypt_next(&self.buffer[..sealed])
                .map_err(|_| CryptError::Tampered)?;
            plain.extend_from_slice(&segment);
            self.buffer.drain(..sealed);
        }
        Ok(plain)
    }

    /// The last segment's plaintext; fails if the object was cut short.
    pub fn finish(&mut self) -> Result<Vec<u8>, CryptError> {
        if self.done {
            return Ok(Vec::new());
        }
        self.done = true;
        let decryptor = self.decryptor.take().ok_or(CryptError::Tampered)?;
        let plain = decryptor
            .decrypt_last(&self.buffer[..])
            .map_err(|_| CryptError::Tampered)?;
        self.buffer.clear();
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap()
    }

    fn seal_all(key: &Key, data: &[u8]) -> Vec<u8> {
        let (mut sealer, mut out) = Sealer::new(key);
        let chunks: Vec<&[u8]> = data.chunks(SEGMENT).collect();
        if chunks.is_empty() {
            out.extend(sealer.seal_last(&[]));
        }
        for (index, chunk) in chunks.iter().enumerate() {
            if index + 1 < chunks.len() {
                out.extend(sealer.seal(chunk));
            } else {
                out.extend(sealer.seal_last(chunk));
            }
        }
        out
    }

    fn open_all(key: &Key, sealed: &[u8], feed: usize) -> Result<Vec<u8>, CryptError> {
        let mut opener = Opener::new(key);
        let mut out = Vec::new();
        for chunk in sealed.chunks(feed) {
            out.extend(opener.push(chunk)?);
        }
        out.extend(opener.finish()?);
        Ok(out)
    }

    #[test]
    fn round_trips_any_length_in_any_chunking() {
        let key = key();
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal_all(&key, &data);
            for feed in [1000, SEGMENT + TAG, 7 * SEGMENT] {
                assert_eq!(
                    open_all(&key, &sealed, feed).unwrap(),
                    data,
                    "len {len} feed {feed}"
                );
            }
        }
    }

    #[test]
    fn tampering_truncation_and_wrong_keys_fail() {
        let key = key();
        let data = vec![7u8; 2 * SEGMENT + 10];
        let sealed = seal_all(&key, &data);
        let mut altered = sealed.clone();
        altered[HEADER_LEN + 5] ^= 1;
        assert!(matches!(
            open_all(&key, &altered, 4096),
            Err(CryptError::Tampered)
        ));
        // Cut at a segment boundary: the remaining segment was not sealed as last.
        let cut = &sealed[..HEADER_LEN + SEGMENT + TAG];
        assert!(matches!(
            open_all(&key, cut, 4096),
            Err(CryptError::Tampered)
        ));
        let other =
            Key::from_base64(&base64::engine::general_purpose::STANDARD.encode([9u8; 32])).unwrap();
        assert!(matches!(
            open_all(&other, &sealed, 4096),
            Err(CryptError::Tampered)
        ));
        assert!(matches!(
            open_all(&key, &[b'z'; 64], 4),
            Err(CryptError::NotEncrypted)
        ));
        assert!(matches!(Key::from_base64("short"), Err(CryptError::BadKey)));
    }
}
