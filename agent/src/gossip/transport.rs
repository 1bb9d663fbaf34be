//! The stream half of gossip on TCP 7946: one short connection per exchange.
//! The opener writes its frames and half-closes; the other side reads them
//! to the end, answers with zero or more frames and closes. Frames are the
//! codec's (length prefix, sealed envelope); this module only splits them,
//! it never opens them: the gossip loop owns the codec.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{FRAME_PREFIX_LEN, MAX_FRAME};

/// How long a peer gets to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one exchange may take end to end. Sync answers are paged, so
/// even large tables stream well within it on a LAN.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames an opener may send before half-closing (requests are one frame).
pub const MAX_REQUEST_FRAMES: usize = 16;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    FrameTooLarge(usize),
    #[error("more than {0} frames")]
    TooManyFrames(usize),
}

/// Reads length-prefixed frames until the peer half-closes; returns each
/// frame's body (the sealed envelope). At most `max_frames` frames.
pub async fn read_frames(
    stream: &mut TcpStream,
    max_frames: usize,
) -> Result<Vec<Vec<u8>>, StreamError> {
    let mut frames = Vec::new();
    loop {
        let mut prefix = [0u8; FRAME_PREFIX_LEN];
        match stream.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(frames),
            Err(e) => return Err(e.into()),
        }
        let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
        if len > MAX_FRAME {
            return Err(StreamError::FrameTooLarge(len));
        }
        if frames.len() == max_frames {
            return Err(StreamError::TooManyFrames(max_frames));
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        frames.push(body);
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

/// Opens a connection to `to`, sends `frames`, and returns the answer's
/// frames. The answer has no frame-count limit (sync pages); the exchange
/// has a time limit.
pub async fn exchange(to: SocketAddr, frames: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, StreamError> {
    let work = async {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to))
            .await
            .map_err(|_| StreamError::Timeout)??;
        stream.set_nodelay(true)?;
        write_frames(&mut stream, &frames).await?;
        read_frames(&mut stream, usize::MAX).await
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
            let request = read_frames(&mut stream, MAX_REQUEST_FRAMES).await.unwrap();
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
            read_frames(&mut first, MAX_REQUEST_FRAMES).await,
            Err(StreamError::FrameTooLarge(_))
        ));
        let (mut second, _) = listener.accept().await.unwrap();
        assert!(matches!(
            read_frames(&mut second, MAX_REQUEST_FRAMES).await,
            Err(StreamError::TooManyFrames(_))
        ));
        client.await.unwrap();
    }
}
