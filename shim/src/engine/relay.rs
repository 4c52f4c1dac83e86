//! The shim between a VM's network device and passt. Both speak the same stream: each
//! Ethernet frame preceded by its length as a 4-byte big-endian number (QEMU's `-netdev
//! stream` and libkrun's passt backend). Frames from the guest go through the box's
//! [`FrameFilter`]; frames to the guest pass unchanged (the filter notes the connections they
//! open to forwarded ports). A length beyond [`MAX_FRAME`] ends the
//! relay (and with it the box's network): no honest device sends one.

use std::sync::{Arc, Mutex as SyncMutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use super::netfilter::{FrameFilter, Verdict};

/// The longest frame either side may send: a 64 KiB IP packet (passt's segmentation offload)
/// and its Ethernet header, with room to spare.
pub const MAX_FRAME: usize = 65_536 + 1024;

/// Why a relay ended.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the {side} sent a frame of {len} bytes, more than the {MAX_FRAME} allowed")]
    Oversized { side: &'static str, len: usize },
    #[error("network relay: {0}")]
    Io(#[from] std::io::Error),
}

/// Relays frames between `vm` (the VMM's end) and `passt` until either side closes.
pub async fn run(vm: UnixStream, passt: UnixStream, filter: FrameFilter) -> Result<(), RelayError> {
    let (vm_read, vm_write) = vm.into_split();
    let (passt_read, passt_write) = passt.into_split();
    let vm_write = Arc::new(Mutex::new(vm_write));
    let filter = Arc::new(SyncMutex::new(filter));
    let outbound = from_guest(
        vm_read,
        passt_write,
        Arc::clone(&vm_write),
        Arc::clone(&filter),
    );
    let inbound = to_guest(passt_read, vm_write, filter);
    // Either direction ending ends the relay: the other side sees its socket close.
    tokio::select! {
        result = outbound => result,
        result = inbound => result,
    }
}

async fn from_guest(
    vm: OwnedReadHalf,
    mut passt: OwnedWriteHalf,
    vm_write: Arc<Mutex<OwnedWriteHalf>>,
    filter: Arc<SyncMutex<FrameFilter>>,
) -> Result<(), RelayError> {
    let mut frames = FrameReader::new(vm, "guest");
    let mut out = Vec::with_capacity(MAX_FRAME + 4);
    while let Some(frame) = frames.next().await? {
        let verdict = filter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(frame);
        match verdict {
            Verdict::Pass => write_frame(&mut passt, &mut out, frame).await?,
            Verdict::Drop => {}
            Verdict::Reject(answer) => {
                let mut buffer = Vec::with_capacity(answer.len() + 4);
                write_frame(&mut *vm_write.lock().await, &mut buffer, &answer).await?;
            }
        }
    }
    Ok(())
}

async fn to_guest(
    passt: OwnedReadHalf,
    vm_write: Arc<Mutex<OwnedWriteHalf>>,
    filter: Arc<SyncMutex<FrameFilter>>,
) -> Result<(), RelayError> {
    let mut frames = FrameReader::new(passt, "network");
    let mut out = Vec::with_capacity(MAX_FRAME + 4);
    while let Some(frame) = frames.next().await? {
        filter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saw_inbound(frame);
        write_frame(&mut *vm_write.lock().await, &mut out, frame).await?;
    }
    Ok(())
}

/// Writes one frame with its length in a single write.
async fn write_frame(
    to: &mut OwnedWriteHalf,
    buffer: &mut Vec<u8>,
    frame: &[u8],
) -> std::io::Result<()> {
    buffer.clear();
    // Frames are at most MAX_FRAME bytes, so the length fits in 4 bytes.
    buffer.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    buffer.extend_from_slice(frame);
    to.write_all(buffer).await
}

/// Length-prefixed frames from one side, each checked against [`MAX_FRAME`] before it is
/// read.
struct FrameReader {
    from: BufReader<OwnedReadHalf>,
    side: &'static str,
    frame: Vec<u8>,
}

impl FrameReader {
    fn new(from: OwnedReadHalf, side: &'static str) -> Self {
        Self {
            from: BufReader::with_capacity(MAX_FRAME, from),
            side,
            frame: Vec::with_capacity(MAX_FRAME),
        }
    }

    /// The next frame; `None` once the side closed between frames.
    async fn next(&mut self) -> Result<Option<&[u8]>, RelayError> {
        let mut header = [0u8; 4];
        match self.from.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > MAX_FRAME {
            return Err(RelayError::Oversized {
                side: self.side,
                len,
            });
        }
        self.frame.resize(len, 0);
        self.from.read_exact(&mut self.frame).await?;
        Ok(Some(&self.frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxlite_shim_api::spec::NetworkSpec;

    fn framed(frame: &[u8]) -> Vec<u8> {
        let mut out = (frame.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(frame);
        out
    }

    async fn read_framed(from: &mut UnixStream) -> Vec<u8> {
        let mut header = [0u8; 4];
        from.read_exact(&mut header).await.unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(header) as usize];
        from.read_exact(&mut frame).await.unwrap();
        frame
    }

    /// An IPv4 frame to `destination` with protocol `proto`.
    fn ipv4(destination: [u8; 4], proto: u8) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 28];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[14 + 9] = proto;
        frame[14 + 12..14 + 16].copy_from_slice(&[10, 0, 2, 15]);
        frame[14 + 16..14 + 20].copy_from_slice(&destination);
        frame
    }

    #[tokio::test]
    async fn frames_are_filtered_one_way_and_answered() {
        let (mut guest, vm_end) = UnixStream::pair().unwrap();
        let (passt_end, mut network) = UnixStream::pair().unwrap();
        let filter = FrameFilter::new(&NetworkSpec::default(), Vec::new());
        let relay = tokio::spawn(run(vm_end, passt_end, filter));

        // Allowed: reaches the network unchanged; refused TCP: answered to the guest.
        let allowed = ipv4([203, 0, 113, 5], 6);
        let refused = ipv4([10, 0, 2, 2], 6);
        let mut both = framed(&refused);
        both.extend(framed(&allowed));
        guest.write_all(&both).await.unwrap();
        assert_eq!(read_framed(&mut network).await, allowed);
        let answer = read_framed(&mut guest).await;
        assert_eq!(answer[14 + 9], 1, "an ICMP answer");

        // From the network: anything goes to the guest, even what the guest may not send.
        network.write_all(&framed(&refused)).await.unwrap();
        assert_eq!(read_framed(&mut guest).await, refused);

        // An oversized length from the guest ends the relay.
        guest
            .write_all(&((MAX_FRAME + 1) as u32).to_be_bytes())
            .await
            .unwrap();
        let err = relay.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("more than the"), "{err}");
        let mut rest = Vec::new();
        network.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_closed_side_ends_the_relay() {
        let (guest, vm_end) = UnixStream::pair().unwrap();
        let (passt_end, _network) = UnixStream::pair().unwrap();
        let filter = FrameFilter::new(&NetworkSpec::default(), Vec::new());
        let relay = tokio::spawn(run(vm_end, passt_end, filter));
        drop(guest);
        relay.await.unwrap().unwrap();
    }
}
