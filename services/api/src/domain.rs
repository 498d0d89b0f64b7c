//! Conversions between ferry-core's domain types and the shared protobuf messages, in one
//! place so every service answers with the same mapping.

use ferry_core::{Readiness, ReasonCode, Stage};

use crate::common::v1 as pb;

/// The wire form of a stage.
pub fn stage_to_pb(stage: Stage) -> pb::Stage {
    match stage {
        Stage::Initial => pb::Stage::Initial,
        Stage::DualRead => pb::Stage::DualRead,
        Stage::DualWrite => pb::Stage::DualWrite,
        Stage::Switching => pb::Stage::Switching,
        Stage::Done => pb::Stage::Done,
    }
}

/// The stage a wire value names; `None` for STAGE_UNSPECIFIED or an unknown number.
pub fn stage_from_pb(value: i32) -> Option<Stage> {
    match pb::Stage::try_from(value).ok()? {
        pb::Stage::Unspecified => None,
        pb::Stage::Initial => Some(Stage::Initial),
        pb::Stage::DualRead => Some(Stage::DualRead),
        pb::Stage::DualWrite => Some(Stage::DualWrite),
        pb::Stage::Switching => Some(Stage::Switching),
        pb::Stage::Done => Some(Stage::Done),
    }
}

/// The wire form of a readiness reason code.
pub fn reason_code_to_pb(code: ReasonCode) -> pb::ReadinessReasonCode {
    use pb::ReadinessReasonCode as P;
    match code {
        ReasonCode::SourceBacklog => P::SourceBacklog,
        ReasonCode::TargetBacklog => P::TargetBacklog,
        ReasonCode::ClientsNotSwitched => P::ClientsNotSwitched,
        ReasonCode::DwellTooShort => P::DwellTooShort,
        // The deprecated wire values 5, 6 and 7 are never sent: their replacements are.
        ReasonCode::SourceStillWritten => P::SourceStillWritten,
        ReasonCode::TopicNotImported => P::TopicNotImported,
        ReasonCode::GroupNotImported => P::GroupNotImported,
        ReasonCode::ClusterUnreachable => P::ClusterUnreachable,
        ReasonCode::BrokerNameCollision => P::BrokerNameCollision,
        ReasonCode::TaskPaused => P::TaskPaused,
        ReasonCode::NoSuchStage => P::NoSuchStage,
        ReasonCode::ConsumersNotOnTarget => P::ConsumersNotOnTarget,
        ReasonCode::PendingDelayMessages => P::PendingDelayMessages,
        ReasonCode::PendingTransactions => P::PendingTransactions,
        ReasonCode::RetryOrDlqBacklog => P::RetryOrDlqBacklog,
        ReasonCode::RouterUnavailable => P::RouterUnavailable,
    }
}

/// The wire form of a readiness measured at `checked_at_ms`.
pub fn readiness_to_pb(r: &Readiness, checked_at_ms: i64) -> pb::Readiness {
    pb::Readiness {
        to_stage: r.to.map(stage_to_pb).unwrap_or(pb::Stage::Unspecified) as i32,
        ready: r.ready,
        reasons: r
            .reasons
            .iter()
            .map(|reason| pb::ReadinessReason {
                code: reason_code_to_pb(reason.code) as i32,
                detail: reason.detail.clone(),
            })
            .collect(),
        checked_at: timestamp(checked_at_ms),
    }
}

/// Unix milliseconds as a protobuf timestamp; `None` for 0 (never set).
pub fn timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip_and_unspecified_is_none() {
        for stage in Stage::ALL {
            assert_eq!(stage_from_pb(stage_to_pb(stage) as i32), Some(stage));
        }
        assert_eq!(stage_from_pb(0), None);
        assert_eq!(stage_from_pb(99), None);
    }

    #[test]
    fn reason_codes_map_to_their_names_and_never_to_deprecated_values() {
        for code in ReasonCode::ALL {
            let wire = reason_code_to_pb(code);
            assert_eq!(
                wire.as_str_name()
                    .trim_start_matches("READINESS_REASON_CODE_"),
                code.as_str()
            );
            assert!(!matches!(wire as i32, 0 | 5..=7), "{code} -> {wire:?}");
        }
    }

    #[test]
    fn timestamps_split_milliseconds() {
        let ts = timestamp(1_700_000_000_123).unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_000_000));
        assert!(timestamp(0).is_none());
    }
}
