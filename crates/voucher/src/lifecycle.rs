//! The life cycle of a voucher in the voucher library (电子凭证库), as pure state machines:
//!
//! - [`Exchange`]: where a voucher stands between its sender and its receiver, as the
//!   sender's status query reports it (状态查询: codes -1 to 14 of the standard), for the
//!   original and for the receipt that comes back;
//! - [`Processing`]: the receiver's internal processing of a voucher it read (codes 10 to 90
//!   of the treasury front systems: read → acknowledged → validated → checked → processed →
//!   sealed → receipt sent).
//!
//! Each transition is legal only from the right state; an illegal one is an error that
//! names the state and the event, and changes nothing. The machines do no I/O: the store
//! persists the states and the node drives the events.

use std::fmt;

/// Which leg of the exchange: the original going out, or the receipt (回单) coming back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    Original,
    Receipt,
}

/// The status of one leg, as its sender sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exchange {
    /// 本方未发送: written and signed, not sent yet (13; receipt leg 14).
    NotSent,
    /// 对方未接收: sent, not yet read by the receiver's library (0 / 6).
    NotReceived,
    /// 接收成功: the receiver's library took it (1 / 7).
    Received,
    /// 接收失败: the receiver's library refused to take it (2 / 8).
    ReceiveFailed,
    /// 签收成功: the receiver acknowledged it (3 / 9).
    Acknowledged,
    /// 签收失败: the receiver refused to acknowledge it, with a reason (4 / 10).
    AckFailed,
    /// 已退回: the receiver returned it, with a reason (5 / 11).
    Returned,
    /// 已收到对方回单: the receipt came back (12; original leg only).
    ReceiptReceived,
    /// 已作废: the sender voided it before it was acknowledged. The libraries drop a voided
    /// voucher, so a status query answers -1 (未找到) for it.
    Voided,
}

/// What happens to a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExchangeEvent {
    /// 发送
    Send,
    /// The receiver's library took it.
    Deliver,
    /// The receiver's library refused it (bad signature, wrong receiver, …).
    RefuseDelivery,
    /// 签收
    Acknowledge,
    /// 签收失败
    RefuseAcknowledge,
    /// 退回
    Return,
    /// The receipt arrived (original leg).
    ReceiptArrives,
    /// 作废
    Void,
}

/// An event that is not legal in the state it was applied to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not allowed when a voucher is {state}")]
pub struct IllegalTransition {
    pub state: String,
    pub event: String,
}

impl Exchange {
    /// Every state, for tables and tests.
    pub const ALL: [Exchange; 9] = [
        Exchange::NotSent,
        Exchange::NotReceived,
        Exchange::Received,
        Exchange::ReceiveFailed,
        Exchange::Acknowledged,
        Exchange::AckFailed,
        Exchange::Returned,
        Exchange::ReceiptReceived,
        Exchange::Voided,
    ];

    /// The standard's status code for this state on `leg`, or `None` where the standard has
    /// none (the receipt of a receipt).
    pub fn code(self, leg: Leg) -> Option<i8> {
        let base = match self {
            Exchange::NotSent => {
                return Some(match leg {
                    Leg::Original => 13,
                    Leg::Receipt => 14,
                });
            }
            Exchange::ReceiptReceived => {
                return (leg == Leg::Original).then_some(12);
            }
            Exchange::Voided => return Some(-1),
            Exchange::NotReceived => 0,
            Exchange::Received => 1,
            Exchange::ReceiveFailed => 2,
            Exchange::Acknowledged => 3,
            Exchange::AckFailed => 4,
            Exchange::Returned => 5,
        };
        Some(match leg {
            Leg::Original => base,
            Leg::Receipt => base + 6,
        })
    }

    /// The state a status code stands for, and its leg.
    pub fn from_code(code: i8) -> Option<(Exchange, Leg)> {
        [Leg::Original, Leg::Receipt].into_iter().find_map(|leg| {
            Exchange::ALL
                .into_iter()
                .find(|s| s.code(leg) == Some(code))
                .map(|s| (s, leg))
        })
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Exchange::NotSent => "本方未发送",
            Exchange::NotReceived => "对方未接收",
            Exchange::Received => "接收成功",
            Exchange::ReceiveFailed => "接收失败",
            Exchange::Acknowledged => "签收成功",
            Exchange::AckFailed => "签收失败",
            Exchange::Returned => "已退回",
            Exchange::ReceiptReceived => "已收到对方回单",
            Exchange::Voided => "已作废",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Exchange::NotSent => "not sent",
            Exchange::NotReceived => "not yet received",
            Exchange::Received => "received",
            Exchange::ReceiveFailed => "refused on receipt",
            Exchange::Acknowledged => "acknowledged",
            Exchange::AckFailed => "not acknowledged",
            Exchange::Returned => "returned",
            Exchange::ReceiptReceived => "receipt received",
            Exchange::Voided => "voided",
        }
    }

    /// The state after `event`, on `leg`. A sender may resend a voucher the receiver's
    /// library refused (after fixing what was wrong) and may void one that was not
    /// acknowledged; nothing follows a void, and only an original gets a receipt.
    pub fn apply(self, leg: Leg, event: ExchangeEvent) -> Result<Exchange, IllegalTransition> {
        use Exchange as S;
        use ExchangeEvent as E;
        let next = match (self, event) {
            (S::NotSent | S::ReceiveFailed, E::Send) => Some(S::NotReceived),
            (S::NotReceived, E::Deliver) => Some(S::Received),
            (S::NotReceived, E::RefuseDelivery) => Some(S::ReceiveFailed),
            (S::Received, E::Acknowledge) => Some(S::Acknowledged),
            (S::Received, E::RefuseAcknowledge) => Some(S::AckFailed),
            (S::Received | S::Acknowledged, E::Return) => Some(S::Returned),
            (S::Acknowledged, E::ReceiptArrives) if leg == Leg::Original => {
                Some(S::ReceiptReceived)
            }
            (
                S::NotSent | S::NotReceived | S::ReceiveFailed | S::AckFailed | S::Returned,
                E::Void,
            ) => Some(S::Voided),
            _ => None,
        };
        next.ok_or_else(|| IllegalTransition {
            state: self.to_string(),
            event: format!("{event:?}"),
        })
    }

    /// No event can change this state any more.
    pub fn is_final(self, leg: Leg) -> bool {
        ExchangeEvent::ALL
            .iter()
            .all(|e| self.apply(leg, *e).is_err())
    }
}

impl ExchangeEvent {
    /// Every event, for tables and tests.
    pub const ALL: [ExchangeEvent; 8] = [
        ExchangeEvent::Send,
        ExchangeEvent::Deliver,
        ExchangeEvent::RefuseDelivery,
        ExchangeEvent::Acknowledge,
        ExchangeEvent::RefuseAcknowledge,
        ExchangeEvent::Return,
        ExchangeEvent::ReceiptArrives,
        ExchangeEvent::Void,
    ];
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name_en(), self.name_zh())
    }
}

/// The receiver's internal processing of a voucher it read (处理状态).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Processing {
    /// 已读取 (10)
    Read,
    /// 签收成功 (15)
    Acknowledged,
    /// 签收失败 (16)
    AckFailed,
    /// 校验中 (17)
    Validating,
    /// 校验成功 (20)
    Validated,
    /// 校验失败 (30)
    ValidationFailed,
    /// 审核 (40): checked by a checker.
    Checked,
    /// 审核失败 (45)
    CheckFailed,
    /// 复核 (50): approved by a second person.
    Approved,
    /// 待补录 (74): a person must complete a field (e.g. the payee's bank number).
    AwaitingCompletion,
    /// 处理成功 (71): booked and paid.
    Processed,
    /// 核算失败 (72): booking failed (e.g. quota exceeded); may be retried or returned.
    BookingFailed,
    /// 签章成功 (73): the receipt is signed and sealed.
    Sealed,
    /// 回单成功 (80): the receipt was sent.
    ReceiptSent,
    /// 退回成功 (90)
    Returned,
    /// 退票成功 (75): the payee's bank bounced the payment after it was made.
    Bounced,
}

/// What happens to a voucher during processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessingEvent {
    Acknowledge,
    RefuseAcknowledge,
    StartValidation,
    PassValidation,
    FailValidation,
    Check,
    FailCheck,
    Approve,
    NeedCompletion,
    Complete,
    Book,
    FailBooking,
    Seal,
    SendReceipt,
    Return,
    Bounce,
}

impl Processing {
    /// Every state, for tables and tests.
    pub const ALL: [Processing; 16] = [
        Processing::Read,
        Processing::Acknowledged,
        Processing::AckFailed,
        Processing::Validating,
        Processing::Validated,
        Processing::ValidationFailed,
        Processing::Checked,
        Processing::CheckFailed,
        Processing::Approved,
        Processing::AwaitingCompletion,
        Processing::Processed,
        Processing::BookingFailed,
        Processing::Sealed,
        Processing::ReceiptSent,
        Processing::Returned,
        Processing::Bounced,
    ];

    /// The front systems' processing code.
    pub fn code(self) -> u8 {
        match self {
            Processing::Read => 10,
            Processing::Acknowledged => 15,
            Processing::AckFailed => 16,
            Processing::Validating => 17,
            Processing::Validated => 20,
            Processing::ValidationFailed => 30,
            Processing::Checked => 40,
            Processing::CheckFailed => 45,
            Processing::Approved => 50,
            Processing::AwaitingCompletion => 74,
            Processing::Processed => 71,
            Processing::BookingFailed => 72,
            Processing::Sealed => 73,
            Processing::ReceiptSent => 80,
            Processing::Returned => 90,
            Processing::Bounced => 75,
        }
    }

    pub fn from_code(code: u8) -> Option<Processing> {
        Processing::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Processing::Read => "已读取",
            Processing::Acknowledged => "签收成功",
            Processing::AckFailed => "签收失败",
            Processing::Validating => "校验中",
            Processing::Validated => "校验成功",
            Processing::ValidationFailed => "校验失败",
            Processing::Checked => "审核",
            Processing::CheckFailed => "审核失败",
            Processing::Approved => "复核",
            Processing::AwaitingCompletion => "待补录",
            Processing::Processed => "处理成功",
            Processing::BookingFailed => "核算失败",
            Processing::Sealed => "签章成功",
            Processing::ReceiptSent => "回单成功",
            Processing::Returned => "退回成功",
            Processing::Bounced => "退票成功",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Processing::Read => "read",
            Processing::Acknowledged => "acknowledged",
            Processing::AckFailed => "acknowledgement refused",
            Processing::Validating => "validating",
            Processing::Validated => "validated",
            Processing::ValidationFailed => "validation failed",
            Processing::Checked => "checked",
            Processing::CheckFailed => "check failed",
            Processing::Approved => "approved",
            Processing::AwaitingCompletion => "awaiting completion",
            Processing::Processed => "processed",
            Processing::BookingFailed => "booking failed",
            Processing::Sealed => "sealed",
            Processing::ReceiptSent => "receipt sent",
            Processing::Returned => "returned",
            Processing::Bounced => "bounced",
        }
    }

    /// The state after `event`. A voucher may be returned at any point before money moved
    /// (up to a failed booking), never after: after payment, money comes back only as a
    /// refund (退票), which is a new voucher.
    pub fn apply(self, event: ProcessingEvent) -> Result<Processing, IllegalTransition> {
        use Processing as S;
        use ProcessingEvent as E;
        let next = match (self, event) {
            (S::Read, E::Acknowledge) => Some(S::Acknowledged),
            (S::Read, E::RefuseAcknowledge) => Some(S::AckFailed),
            (S::Acknowledged, E::StartValidation) => Some(S::Validating),
            (S::Validating, E::PassValidation) => Some(S::Validated),
            (S::Validating, E::FailValidation) => Some(S::ValidationFailed),
            (S::Validated, E::Check) => Some(S::Checked),
            (S::Validated, E::FailCheck) => Some(S::CheckFailed),
            (S::Checked, E::Approve) => Some(S::Approved),
            (S::Checked, E::FailCheck) => Some(S::CheckFailed),
            (S::Approved, E::NeedCompletion) => Some(S::AwaitingCompletion),
            (S::AwaitingCompletion, E::Complete) => Some(S::Approved),
            (S::Approved | S::BookingFailed, E::Book) => Some(S::Processed),
            (S::Approved | S::BookingFailed, E::FailBooking) => Some(S::BookingFailed),
            (S::Processed, E::Seal) => Some(S::Sealed),
            (S::Sealed, E::SendReceipt) => Some(S::ReceiptSent),
            (S::ReceiptSent, E::Bounce) => Some(S::Bounced),
            (
                S::Acknowledged
                | S::ValidationFailed
                | S::Validated
                | S::Checked
                | S::CheckFailed
                | S::Approved
                | S::AwaitingCompletion
                | S::BookingFailed,
                E::Return,
            ) => Some(S::Returned),
            _ => None,
        };
        next.ok_or_else(|| IllegalTransition {
            state: self.to_string(),
            event: format!("{event:?}"),
        })
    }

    /// Money has moved for the voucher: it can no longer be returned, only refunded.
    pub fn money_moved(self) -> bool {
        matches!(
            self,
            Processing::Processed
                | Processing::Sealed
                | Processing::ReceiptSent
                | Processing::Bounced
        )
    }
}

impl fmt::Display for Processing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.name_en(), self.code(), self.name_zh())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn exchange_codes_are_the_standards() {
        let original: Vec<i8> = Exchange::ALL
            .iter()
            .filter_map(|s| s.code(Leg::Original))
            .collect();
        assert_eq!(original, [13, 0, 1, 2, 3, 4, 5, 12, -1]);
        let receipt: Vec<i8> = Exchange::ALL
            .iter()
            .filter_map(|s| s.code(Leg::Receipt))
            .collect();
        assert_eq!(receipt, [14, 6, 7, 8, 9, 10, 11, -1]);
        for code in [0, 5, 6, 11, 12, 13, 14] {
            let (state, leg) = Exchange::from_code(code).unwrap();
            assert_eq!(state.code(leg), Some(code));
        }
        assert_eq!(Exchange::from_code(15), None);
    }

    #[test]
    fn processing_codes_are_unique_and_round_trip() {
        let codes: BTreeSet<u8> = Processing::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes.len(), Processing::ALL.len());
        for state in Processing::ALL {
            assert_eq!(Processing::from_code(state.code()), Some(state));
        }
    }

    #[test]
    fn the_happy_paths() {
        use ExchangeEvent as E;
        let mut s = Exchange::NotSent;
        for e in [E::Send, E::Deliver, E::Acknowledge, E::ReceiptArrives] {
            s = s.apply(Leg::Original, e).unwrap();
        }
        assert_eq!(s, Exchange::ReceiptReceived);
        assert!(s.is_final(Leg::Original));

        use ProcessingEvent as P;
        let mut p = Processing::Read;
        for e in [
            P::Acknowledge,
            P::StartValidation,
            P::PassValidation,
            P::Check,
            P::Approve,
            P::NeedCompletion,
            P::Complete,
            P::FailBooking,
            P::Book,
            P::Seal,
            P::SendReceipt,
        ] {
            p = p.apply(e).unwrap();
        }
        assert_eq!(p, Processing::ReceiptSent);
    }

    #[test]
    fn no_return_or_void_after_the_point_of_no_return() {
        for state in Processing::ALL.into_iter().filter(|s| s.money_moved()) {
            assert!(state.apply(ProcessingEvent::Return).is_err(), "{state}");
        }
        assert!(
            Exchange::Acknowledged
                .apply(Leg::Original, ExchangeEvent::Void)
                .is_err()
        );
        assert!(
            Exchange::ReceiptReceived
                .apply(Leg::Original, ExchangeEvent::Return)
                .is_err()
        );
        // A receipt does not get a receipt of its own.
        assert!(
            Exchange::Acknowledged
                .apply(Leg::Receipt, ExchangeEvent::ReceiptArrives)
                .is_err()
        );
        let err = Processing::Sealed
            .apply(ProcessingEvent::Return)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Return is not allowed when a voucher is sealed (73 签章成功)"
        );
    }

    #[test]
    fn every_state_is_reachable_and_the_dead_ends_are_the_intended_ones() {
        // Walk the processing graph from Read.
        let mut seen = BTreeSet::from([Processing::Read.code()]);
        let mut todo = vec![Processing::Read];
        const EVENTS: [ProcessingEvent; 16] = [
            ProcessingEvent::Acknowledge,
            ProcessingEvent::RefuseAcknowledge,
            ProcessingEvent::StartValidation,
            ProcessingEvent::PassValidation,
            ProcessingEvent::FailValidation,
            ProcessingEvent::Check,
            ProcessingEvent::FailCheck,
            ProcessingEvent::Approve,
            ProcessingEvent::NeedCompletion,
            ProcessingEvent::Complete,
            ProcessingEvent::Book,
            ProcessingEvent::FailBooking,
            ProcessingEvent::Seal,
            ProcessingEvent::SendReceipt,
            ProcessingEvent::Return,
            ProcessingEvent::Bounce,
        ];
        while let Some(state) = todo.pop() {
            for event in EVENTS {
                if let Ok(next) = state.apply(event)
                    && seen.insert(next.code())
                {
                    todo.push(next);
                }
            }
        }
        assert_eq!(seen.len(), Processing::ALL.len());
        let dead: BTreeSet<u8> = Processing::ALL
            .into_iter()
            .filter(|s| EVENTS.iter().all(|e| s.apply(*e).is_err()))
            .map(Processing::code)
            .collect();
        assert_eq!(dead, BTreeSet::from([16, 75, 90]));

        let mut seen = BTreeSet::from([format!("{:?}", Exchange::NotSent)]);
        let mut todo = vec![Exchange::NotSent];
        while let Some(state) = todo.pop() {
            for event in ExchangeEvent::ALL {
                if let Ok(next) = state.apply(Leg::Original, event)
                    && seen.insert(format!("{next:?}"))
                {
                    todo.push(next);
                }
            }
        }
        assert_eq!(seen.len(), Exchange::ALL.len());
        let finals: Vec<Exchange> = Exchange::ALL
            .into_iter()
            .filter(|s| s.is_final(Leg::Original))
            .collect();
        assert_eq!(finals, [Exchange::ReceiptReceived, Exchange::Voided]);
    }
}
