import Testing

@testable import WarrenAMQP

@Suite("Ack coalescing")
struct AckCoalescerTests {
    let now = ContinuousClock.now

    @Test func aContiguousRunBecomesOneMultipleAck() {
        var coalescer = AckCoalescer()
        for tag in 1...50 { coalescer.ack(UInt64(tag), now: now) }
        #expect(coalescer.flush(force: false) == [.ack(50, multiple: true)])
        #expect(coalescer.pendingCount == 0)
        #expect(coalescer.nextUnsettled == 51)
    }

    @Test func acksBehindAGapWaitThenGoOutAlone() {
        var coalescer = AckCoalescer()
        coalescer.ack(2, now: now)
        coalescer.ack(3, now: now)
        #expect(coalescer.flush(force: false).isEmpty, "tag 1 is still being handled")
        #expect(coalescer.oldestPendingSince == now)
        #expect(coalescer.flush(force: true) == [.ack(2, multiple: false), .ack(3, multiple: false)])
        coalescer.ack(1, now: now)
        #expect(
            coalescer.flush(force: false) == [.ack(1, multiple: true)],
            "never name a tag already settled: RabbitMQ would close the channel")
        #expect(coalescer.nextUnsettled == 4)
    }

    @Test func aNackInTheMiddleIsNeverCoveredByAHeldAck() {
        var coalescer = AckCoalescer()
        coalescer.ack(1, now: now)
        coalescer.ack(3, now: now)
        #expect(coalescer.flush(force: false) == [.ack(1, multiple: true)])
        // The nack of 2 is sent first; only then may a multiple ack run over it.
        #expect(coalescer.settledElsewhere(2, multiple: false) == [.ack(3, multiple: true)])
        #expect(coalescer.nextUnsettled == 4)
    }

    @Test func anExplicitMultipleAckSwallowsWhatItCovers() {
        var coalescer = AckCoalescer()
        coalescer.ack(2, now: now)
        coalescer.ack(5, now: now)
        #expect(coalescer.settledElsewhere(3, multiple: true).isEmpty)
        #expect(coalescer.nextUnsettled == 4)
        #expect(coalescer.pendingCount == 1)
        coalescer.ack(4, now: now)
        #expect(coalescer.flush(force: false) == [.ack(5, multiple: true)])
    }

    @Test func theNamedTagIsAlwaysOneStillOutstanding() {
        var coalescer = AckCoalescer()
        coalescer.ack(3, now: now)
        _ = coalescer.settledElsewhere(2, multiple: false)  // 2 was rejected
        _ = coalescer.flush(force: true)  // 3 went out alone
        coalescer.ack(1, now: now)
        #expect(coalescer.flush(force: false) == [.ack(1, multiple: true)])
        #expect(coalescer.nextUnsettled == 4)
    }

    @Test func settledTagsAreIgnored() {
        var coalescer = AckCoalescer()
        coalescer.ack(1, now: now)
        _ = coalescer.flush(force: false)
        coalescer.ack(1, now: now)
        #expect(coalescer.pendingCount == 0)
    }
}
