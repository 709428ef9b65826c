//! The UDP answer loop: one thread per socket, in batches. `recvmmsg`
//! takes up to [`BATCH`] queries in one call (waiting for the first only),
//! each is answered in place into its own reused buffer, and `sendmmsg`
//! sends the batch's answers in one call: two system calls per batch, not
//! per query, as gdnsd does. Buffers and headers are allocated once per
//! thread. A receive timeout lets the thread see the stop flag.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgesteer_geo::GeoLookup;
use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

use crate::server::{DnsServer, Plane};

/// Queries taken per receive call.
pub const BATCH: usize = 32;
/// Largest query read (a query is small; larger datagrams are cut and
/// then answered FORMERR or dropped as malformed).
const QUERY_MAX: usize = 2048;
/// How often a waiting thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

fn ip_of(a: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Serves `sock` until `stop` is set.
pub fn serve<P: Plane, G: GeoLookup + ?Sized + 'static>(
    server: &DnsServer<P, G>,
    sock: &UdpSocket,
    stop: &Arc<AtomicBool>,
) {
    // Blocking, with a timeout: the thread waits in the kernel, and wakes
    // to look at the stop flag.
    if let Err(e) = sock
        .set_nonblocking(false)
        .and_then(|()| sock.set_read_timeout(Some(STOP_POLL)))
    {
        tracing::warn!(error = %e, "cannot set the DNS socket's receive timeout; this thread will not stop at shutdown until a query arrives");
    }
    let fd = sock.as_raw_fd();
    let mut queries: Box<[[u8; QUERY_MAX]; BATCH]> = Box::new([[0; QUERY_MAX]; BATCH]);
    let mut answers: [Vec<u8>; BATCH] = std::array::from_fn(|_| Vec::with_capacity(1500));
    let mut recv_hdrs = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_hdrs = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut from: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut lens = [0usize; BATCH];
    let mut to: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut keep = [0usize; BATCH];
    while !stop.load(Ordering::Relaxed) {
        let n = {
            let mut iovs = queries.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
            match recvmmsg(
                fd,
                &mut recv_hdrs,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(got) => {
                    let mut n = 0;
                    for (i, m) in got.enumerate() {
                        lens[i] = m.bytes;
                        from[i] = m.address;
                        n = i + 1;
                    }
                    n
                }
                Err(Errno::EAGAIN | Errno::EINTR) => 0,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    0
                }
            }
        };
        let mut m = 0;
        for i in 0..n {
            let Some(addr) = from[i] else { continue };
            let Some(ip) = ip_of(&addr) else { continue };
            let msg = &queries[i][..lens[i].min(QUERY_MAX)];
            if server.answer_udp(msg, ip, &mut answers[i]) {
                keep[m] = i;
                to[m] = Some(addr);
                m += 1;
            }
        }
        send(fd, &mut send_hdrs, &answers, &keep[..m], &to[..m]);
    }
}

/// Sends the kept answers, retrying the rest after a partial send.
fn send(
    fd: i32,
    hdrs: &mut MultiHeaders<SockaddrStorage>,
    answers: &[Vec<u8>; BATCH],
    keep: &[usize],
    to: &[Option<SockaddrStorage>],
) {
    let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| [IoSlice::new(&answers[i])]);
    let mut start = 0;
    while start < keep.len() {
        let slices = keep[start..].iter().map(|&i| &iovs[i]);
        let cmsgs: [ControlMessage<'_>; 0] = [];
        match sendmmsg(fd, hdrs, slices, &to[start..], cmsgs, MsgFlags::empty()) {
            // A partial count means a later datagram failed; UDP answers
            // are not retried (the client asks again). The results are not
            // iterated: nix would read send headers' unset addresses.
            Ok(_) => return,
            Err(Errno::EINTR) => {}
            Err(e) => {
                // One bad destination fails the call: skip it, send the rest.
                let peer = to[start].as_ref().map(|a| a.to_string());
                tracing::debug!(error = %e, ?peer, "DNS UDP send failed");
                start += 1;
            }
        }
    }
}
