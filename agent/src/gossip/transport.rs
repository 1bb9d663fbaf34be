//! The stream half of gossip on TCP 7946: one short connection per exchange.
//! The opener writes a small hello frame, then its request frames, and
//! half-closes; the other side reads the hello alone (at most
//! [`MAX_HELLO_FRAME`] bytes, within [`HELLO_TIMEOUT`]), has it
//! authenticated, and only then reads the rest to the end, answers with zero
//! or more frames and closes. Frames are the codec's (length prefix, sealed
//! envelope); this module only splits them, it never opens them: the gossip
//! loop owns the codec. Memory for a frame grows with the bytes that
//! actually arrive, never with the length a peer announces.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{FRAME_PREFIX_LEN, MAX_FRAME, OVERHEAD};

/// How long a peer gets to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one exchange may take end to end. Sync answers are paged, so
/// even large tables stream well within it on a LAN.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames an opener may send after its hello before half-closing
/// (requests are one frame).
pub const MAX_REQUEST_FRAMES: usize = 16;
/// The most bytes of request frames read from an authenticated opener.
pub const MAX_REQUEST_BYTES: usize = 2 * MAX_FRAME;
/// The largest first frame: a sealed hello is some 60 bytes.
pub const MAX_HELLO_FRAME: usize = OVERHEAD + 64;
/// How long an opener has to send its hello after connecting.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// The most frames and bytes an answer may carry (sync pages of the largest
/// tables fit many times over).
pub const MAX_ANSWER_FRAMES: usize = 4096;
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("gossip stream I/O failed")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("more than {0} frames")]
    TooManyFrames(usize),
    #[error("more than {0} bytes of frames")]
    TooManyBytes(usize),
    #[error("the peer sent no hello")]
    NoHello,
    #[error("the hello did not authenticate")]
    Unauthenticated,
}

/// Reads one frame's body of at most `max` bytes; `None` at a clean end of
/// stream before its prefix. The body's memory grows as its bytes arrive.
pub async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, StreamError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    match stream.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max {
        return Err(StreamError::FrameTooLarge { len, max });
    }
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let read = (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if read < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(body))
}

/// Reads the opener's hello: one small frame within [`HELLO_TIMEOUT`].
pub async fn read_hello<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Vec<u8>, StreamError> {
    match tokio::time::timeout(HELLO_TIMEOUT, read_frame(stream, MAX_HELLO_FRAME)).await {
        Err(_) => Err(StreamError::Timeout),
        Ok(Ok(Some(frame))) => Ok(frame),
        Ok(Ok(None)) => Err(StreamError::NoHello),
        Ok(Err(e)) => Err(e),
    }
}

/// Reads length-prefixed frames until the peer half-closes; returns each
/// frame's body (the sealed envelope). At most `max_frames` frames of at
/// most [`MAX_FRAME`] bytes, `max_bytes` in all.
pub async fn read_frames<R: AsyncRead + Unpin>(
    stream: &mut R,
    max_frames: usize,
    max_bytes: usize,
) -> Result<Vec<Vec<u8>>, StreamError> {
    let mut frames = Vec::new();
    let mut total = 0usize;
    loop {
        let budget = MAX_FRAME.min(max_bytes - total);
        let frame = match read_frame(stream, budget).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(frames),
            Err(StreamError::FrameTooLarge { len, .. }) if len <= MAX_FRAME => {
                return Err(StreamError::TooManyBytes(max_bytes))
            }
            Err(e) => return Err(e),
        };
        if frames.len() == max_frames {
            return Err(StreamError::TooManyFrames(max_frames));
        }
        total += frame.len();
        frames.push(frame);
    }
}

/// Writes already-framed bytes, then half-closes.
pub async fn write_frames(stream: &mut TcpStream, frames: &[Vec<u8>]) -> Result<(), StreamError> {
    for frame in frames {
        stream.write_all(frame).await?;
    }
    stream.shutdown().await?;
    Ok(())
}

/// Opens a connection to `to`, sends `frames` (the hello first), and returns
/// the answer's frames, at most [`MAX_ANSWER_FRAMES`] and
/// [`MAX_ANSWER_BYTES`]; the exchange has a time limit.
pub async fn exchange(to: SocketAddr, frames: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, StreamError> {
    let work = async {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to))
            .await
            .map_err(|_| StreamError::Timeout)??;
        stream.set_nodelay(true)?;
        write_frames(&mut stream, &frames).await?;
        read_frames(&mut stream, MAX_ANSWER_FRAMES, MAX_ANSWER_BYTES).await
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .map_err(|_| StreamError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn an_exchange_carries_frames_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_frames(&mut stream, MAX_REQUEST_FRAMES, MAX_REQUEST_BYTES)
                .await
                .unwrap();
            assert_eq!(request, vec![b"ping".to_vec()]);
            let answer: Vec<Vec<u8>> = (0..3).map(|i| frame(&[i; 5])).collect();
            write_frames(&mut stream, &answer).await.unwrap();
        });
        let answer = exchange(addr, vec![frame(b"ping")]).await.unwrap();
        assert_eq!(answer, vec![vec![0; 5], vec![1; 5], vec![2; 5]]);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn oversized_and_endless_requests_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
            let _ = stream.write_all(&huge).await;
            let mut second = TcpStream::connect(addr).await.unwrap();
            let many: Vec<Vec<u8>> = (0..MAX_REQUEST_FRAMES + 1).map(|_| frame(b"x")).collect();
            let _ = write_frames(&mut second, &many).await;
        });
        let (mut first, _) = listener.accept().await.unwrap();
        assert!(matches!(
            read_frames(&mut first, MAX_REQUEST_FRAMES, MAX_REQUEST_BYTES).await,
            Err(StreamError::FrameTooLarge { .. })
        ));
        let (mut second, _) = listener.accept().await.unwrap();
        assert!(matches!(
            read_frames(&mut second, MAX_REQUEST_FRAMES, MAX_REQUEST_BYTES).await,
            Err(StreamError::TooManyFrames(_))
        ));
        client.await.unwrap();
    }

    #[tokio::test]
    async fn an_announced_length_reserves_nothing_until_bytes_arrive() {
        // A prefix announcing the largest frame, then 10 bytes and the end.
        let mut input = (MAX_FRAME as u32).to_be_bytes().to_vec();
        input.extend_from_slice(&[7; 10]);
        let mut reader = input.as_slice();
        let err = read_frame(&mut reader, MAX_FRAME).await.unwrap_err();
        assert!(matches!(err, StreamError::Io(_)), "{err}");
        // Byte budgets across frames.
        let mut two = frame(&[1; 100]);
        two.extend(frame(&[2; 100]));
        let mut reader = two.as_slice();
        assert!(matches!(
            read_frames(&mut reader, 10, 150).await,
            Err(StreamError::TooManyBytes(150))
        ));
        let mut reader = two.as_slice();
        assert_eq!(read_frames(&mut reader, 10, 200).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_hello_is_small_and_prompt() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut big = TcpStream::connect(addr).await.unwrap();
            let _ = big
                .write_all(&((MAX_HELLO_FRAME + 1) as u32).to_be_bytes())
                .await;
            let idle = TcpStream::connect(addr).await.unwrap();
            let mut ok = TcpStream::connect(addr).await.unwrap();
            ok.write_all(&frame(b"hello")).await.unwrap();
            (big, idle, ok)
        });
        let (mut big, _) = listener.accept().await.unwrap();
        assert!(matches!(
            read_hello(&mut big).await,
            Err(StreamError::FrameTooLarge { .. })
        ));
        let (mut idle, _) = listener.accept().await.unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            read_hello(&mut idle).await,
            Err(StreamError::Timeout)
        ));
        assert!(started.elapsed() < HELLO_TIMEOUT + Duration::from_millis(500));
        let (mut ok, _) = listener.accept().await.unwrap();
        assert_eq!(read_hello(&mut ok).await.unwrap(), b"hello");
        drop(client.await.unwrap());
    }
}
