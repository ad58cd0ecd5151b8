import Testing
import WarrenAMQP

@testable import Warren

@Suite("Redelivery bound: the verdict")
struct RedeliveryVerdictTests {
    @Test func aFirstDeliveryIsHandled() {
        #expect(RedeliveryVerdict.decide(redelivered: false, headers: [:], limit: 3) == .handle)
        #expect(
            RedeliveryVerdict.decide(redelivered: false, headers: [WarrenHeader.redeliveries: .int64(99)], limit: 3)
                == .handle)
    }

    @Test func aClassicRedeliveryIsCountedThenDeadLetteredOverTheLimit() {
        #expect(
            RedeliveryVerdict.decide(redelivered: true, headers: [:], limit: 3)
                == .reenqueue(returns: 1, isolated: false))
        #expect(
            RedeliveryVerdict.decide(redelivered: true, headers: [WarrenHeader.redeliveries: .int64(2)], limit: 3)
                == .reenqueue(returns: 3, isolated: true))
        #expect(
            RedeliveryVerdict.decide(redelivered: true, headers: [WarrenHeader.redeliveries: .int64(3)], limit: 3)
                == .deadLetter(returns: 4, limit: 3))
    }

    @Test func garbageCountsNeitherCrashNorLoop() {
        #expect(
            RedeliveryVerdict.decide(redelivered: true, headers: [WarrenHeader.redeliveries: "lots"], limit: 3)
                == .reenqueue(returns: 1, isolated: false))
        #expect(
            RedeliveryVerdict.decide(redelivered: true, headers: [WarrenHeader.redeliveries: .int64(-5)], limit: 3)
                == .reenqueue(returns: 1, isolated: false))
        #expect(
            RedeliveryVerdict.decide(redelivered: true, headers: [WarrenHeader.redeliveries: .int64(.max)], limit: 3)
                == .deadLetter(returns: Int(Int64.max), limit: 3))
    }

    @Test func aQuorumQueueCountsItself() {
        #expect(
            RedeliveryVerdict.decide(
                redelivered: true, headers: [WarrenHeader.quorumDeliveryCount: .int64(3)], limit: 3) == .handle)
        #expect(
            RedeliveryVerdict.decide(
                redelivered: true, headers: [WarrenHeader.quorumDeliveryCount: .int64(4)], limit: 3)
                == .deadLetter(returns: 4, limit: 3))
    }

    @Test func noLimitNoBound() {
        #expect(
            RedeliveryVerdict.decide(redelivered: true, headers: [WarrenHeader.redeliveries: .int64(1000)], limit: nil)
                == .handle)
    }

    @Test func theDecisionNamesTheReason() {
        let decision = FailureDecision.decide(
            failure: .redeliveryLimit(returns: 4, limit: 3), attempt: 1, policy: .default)
        guard case .deadLetter(let reason) = decision else {
            Issue.record("expected a dead letter")
            return
        }
        #expect(reason.kind == .redeliveryLimit)
        #expect(reason.detail.contains("4 times"))
    }
}
