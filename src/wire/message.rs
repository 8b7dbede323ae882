//! All seven messages: [`Message::parse`] checks lengths only (no hashing, no signatures), which is
//! exactly what a receiver thread needs to route a datagram; cryptographic checks run later, on the
//! thread that owns the data.

use crate::limits::{ADDR_LEN, DAT_MESSAGE_HEADER_LEN, MAX_PACKET_LEN};
use crate::wire::{Dat, Error, Get, GetRepr, Op, Pong, PongRepr, Result, WireAddr, array};

/// PING: op + challenge.
const PING_LEN: usize = 1 + 8;
/// GETMYADDRPORT: op only.
const GETMYADDRPORT_LEN: usize = 1;
/// GETMYADDRPORT_ACK: op + address.
const GETMYADDRPORT_ACK_LEN: usize = 1 + ADDR_LEN;

/// A parsed message, borrowing the datagram where it can.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// `00 ‖ challenge[8]`.
    Ping {
        /// Challenge the PONG must sign.
        challenge: [u8; 8],
    },
    /// Answer to PING.
    Pong(PongRepr),
    /// A dat to store.
    Put(Dat<&'a [u8]>),
    /// A request for (pubkey, key).
    Get(GetRepr<'a>),
    /// The answer to a GET (possibly the not-found dat).
    GetAck(Dat<&'a [u8]>),
    /// "What is my address?"
    GetMyAddrPort,
    /// "Your address is …".
    GetMyAddrPortAck(WireAddr),
}

impl<'a> Message<'a> {
    /// Parses a datagram. Never panics; every refusal names its reason.
    ///
    /// Performance (see `benches/wire.rs`): each arm returns its own variant rather than one
    /// `Ok(match …)`, because LLVM otherwise builds every variant in one stack temporary and
    /// copies the whole enum (sized by the 218-byte `PongRepr`) into the result, so decoding a
    /// 39-byte GET cost as much as copying a PONG. The PONG arm is out of line so that the rest
    /// stays small enough to inline into the caller, whose `match` then reads the fields
    /// straight from registers instead of reloading a just-written struct.
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>> {
        let Some(&op_byte) = bytes.first() else {
            return Err(Error::Empty);
        };
        if bytes.len() > MAX_PACKET_LEN {
            return Err(Error::TooLong);
        }
        match Op::from_byte(op_byte) {
            None => Err(Error::UnknownOp),
            Some(Op::Ping) => {
                exact(bytes, PING_LEN)?;
                Ok(Message::Ping {
                    challenge: array(&bytes[1..]),
                })
            }
            Some(Op::Pong) => parse_pong(bytes),
            Some(Op::Put) => Ok(Message::Put(parse_dat_message(bytes)?)),
            Some(Op::Get) => Ok(Message::Get(Get::new_checked(bytes)?.into_repr())),
            Some(Op::GetAck) => Ok(Message::GetAck(parse_dat_message(bytes)?)),
            Some(Op::GetMyAddrPort) => {
                exact(bytes, GETMYADDRPORT_LEN)?;
                Ok(Message::GetMyAddrPort)
            }
            Some(Op::GetMyAddrPortAck) => {
                exact(bytes, GETMYADDRPORT_ACK_LEN)?;
                Ok(Message::GetMyAddrPortAck(array(&bytes[1..])))
            }
        }
    }

    /// The op of this message.
    pub fn op(&self) -> Op {
        match self {
            Message::Ping { .. } => Op::Ping,
            Message::Pong(_) => Op::Pong,
            Message::Put(_) => Op::Put,
            Message::Get(_) => Op::Get,
            Message::GetAck(_) => Op::GetAck,
            Message::GetMyAddrPort => Op::GetMyAddrPort,
            Message::GetMyAddrPortAck(_) => Op::GetMyAddrPortAck,
        }
    }

    /// For PUT, GET and GET_ACK, the (pubkey, key) that picks the shard.
    pub fn record_key(&self) -> Option<(&[u8; 32], &[u8])> {
        match self {
            Message::Put(dat) | Message::GetAck(dat) => Some((dat.pubkey(), dat.key())),
            Message::Get(get) => Some((get.pubkey, get.key)),
            _ => None,
        }
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Message::Ping { .. } => PING_LEN,
            Message::Pong(pong) => pong.buffer_len(),
            Message::Put(dat) | Message::GetAck(dat) => DAT_MESSAGE_HEADER_LEN + dat.len(),
            Message::Get(get) => get.buffer_len(),
            Message::GetMyAddrPort => GETMYADDRPORT_LEN,
            Message::GetMyAddrPortAck(_) => GETMYADDRPORT_ACK_LEN,
        }
    }

    /// Writes the message into `buf` and returns its length. Panics if `buf` is shorter than
    /// [`Message::buffer_len`] (a caller bug). Allocates nothing.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        match self {
            Message::Ping { challenge } => {
                buf[0] = Op::Ping as u8;
                buf[1..PING_LEN].copy_from_slice(challenge);
                PING_LEN
            }
            Message::Pong(pong) => pong.emit(buf),
            Message::Put(dat) => crate::wire::emit_dat_message(Op::Put, dat.as_bytes(), buf),
            Message::GetAck(dat) => crate::wire::emit_dat_message(Op::GetAck, dat.as_bytes(), buf),
            Message::Get(get) => get.emit(buf),
            Message::GetMyAddrPort => {
                buf[0] = Op::GetMyAddrPort as u8;
                GETMYADDRPORT_LEN
            }
            Message::GetMyAddrPortAck(addr) => {
                buf[0] = Op::GetMyAddrPortAck as u8;
                buf[1..GETMYADDRPORT_ACK_LEN].copy_from_slice(addr);
                GETMYADDRPORT_ACK_LEN
            }
        }
    }
}

/// The PONG arm of [`Message::parse`], kept out of line (see there).
#[inline(never)]
fn parse_pong(bytes: &[u8]) -> Result<Message<'_>> {
    Ok(Message::Pong(Pong::new_checked(bytes)?.repr()))
}

#[inline]
fn exact(bytes: &[u8], len: usize) -> Result<()> {
    match bytes.len().cmp(&len) {
        core::cmp::Ordering::Less => Err(Error::TooShort),
        core::cmp::Ordering::Greater => Err(Error::TrailingBytes),
        core::cmp::Ordering::Equal => Ok(()),
    }
}

#[inline]
fn parse_dat_message(bytes: &[u8]) -> Result<Dat<&[u8]>> {
    if bytes.len() < DAT_MESSAGE_HEADER_LEN {
        return Err(Error::TooShort);
    }
    let dat_len = u16::from_le_bytes([bytes[1], bytes[2]]) as usize;
    let dat_bytes = &bytes[DAT_MESSAGE_HEADER_LEN..];
    let dat = Dat::new_checked(dat_bytes)?;
    if dat_len != dat.len() {
        return Err(Error::BadDatLength);
    }
    Ok(dat)
}
