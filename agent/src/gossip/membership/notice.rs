//! Direct notices foca does not send by itself, after Lifeguard's buddy
//! system: the member whose probe raised a suspicion tells the suspect
//! directly (gossip alone may hand the news to everyone but the suspect),
//! and a suspect answers whoever told it, so the suspicion is refuted where
//! its timer runs. Both are ordinary foca gossip messages addressed to one
//! member.

use bytes::{BufMut, Bytes};
use foca::{Codec, Header, Incarnation, Member, Message, PostcardCodec};

use super::MemberId;

/// A foca `Gossip` message from `src` (at `incarnation`) to `dst` carrying
/// `updates`, or `None` if it does not fit in `max_len` bytes.
pub(crate) fn gossip_to(
    src: &MemberId,
    incarnation: Incarnation,
    dst: &MemberId,
    updates: &[Member<MemberId>],
    max_len: usize,
) -> Option<Bytes> {
    let header = Header {
        src: src.clone(),
        src_incarnation: incarnation,
        dst: dst.clone(),
        message: Message::Gossip,
    };
    let mut buf = Vec::new().limit(max_len);
    PostcardCodec.encode_header(&header, &mut buf).ok()?;
    let count = u16::try_from(updates.len()).ok()?;
    if buf.remaining_mut() < 2 {
        return None;
    }
    buf.put_u16(count);
    for update in updates {
        PostcardCodec.encode_member(update, &mut buf).ok()?;
    }
    Some(Bytes::from(buf.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use foca::State;
    use std::net::SocketAddr;

    fn id(i: u8) -> MemberId {
        MemberId::new(format!("n{i}"), SocketAddr::from(([10, 0, 0, i], 7946)), 1)
    }

    #[test]
    fn notice_is_a_well_formed_foca_gossip_message() {
        let suspicion = Member::new(id(2), 4, State::Suspect);
        let bytes = gossip_to(&id(1), 7, &id(2), std::slice::from_ref(&suspicion), 1400);
        let bytes = bytes.unwrap_or_default();
        let mut rest = &bytes[..];
        let header: Result<Header<MemberId>, _> = PostcardCodec.decode_header(&mut rest);
        let header = header.ok();
        assert_eq!(
            header.as_ref().map(|h| (h.src_incarnation, &h.message)),
            Some((7, &Message::Gossip))
        );
        assert_eq!(rest.get_u16(), 1);
        let update: Result<Member<MemberId>, _> = PostcardCodec.decode_member(&mut rest);
        assert_eq!(update.ok(), Some(suspicion));
        assert!(rest.is_empty());
    }

    #[test]
    fn notice_that_does_not_fit_is_not_sent() {
        assert!(gossip_to(&id(1), 0, &id(2), &[], 10).is_none());
    }
}
