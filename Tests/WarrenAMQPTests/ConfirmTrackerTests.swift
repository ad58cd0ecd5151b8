import Testing

@testable import WarrenAMQP

@Suite("Publisher-confirm bookkeeping")
struct ConfirmTrackerTests {
    @Test func sequenceNumbersStartAtOne() {
        var tracker = ConfirmTracker<String>()
        #expect(tracker.register("a") == 1)
        #expect(tracker.register("b") == 2)
        #expect(tracker.outstanding == 2)
    }

    @Test func singleAckSettlesOnlyItsTag() {
        var tracker = ConfirmTracker<String>()
        for name in ["a", "b", "c"] { _ = tracker.register(name) }
        #expect(tracker.settle(deliveryTag: 2, multiple: false).map(\.token) == ["b"])
        #expect(tracker.outstanding == 2)
        #expect(tracker.settle(deliveryTag: 2, multiple: false).isEmpty, "a second confirm of the same tag is ignored")
        #expect(tracker.settle(deliveryTag: 3, multiple: true).map(\.token) == ["a", "c"])
        #expect(tracker.outstanding == 0)
    }

    @Test func multipleAckSettlesEverythingUpToTheTag() {
        var tracker = ConfirmTracker<Int>()
        for n in 1...10 { _ = tracker.register(n) }
        #expect(tracker.settle(deliveryTag: 7, multiple: true).map(\.token) == Array(1...7))
        #expect(tracker.settle(deliveryTag: 99, multiple: false).isEmpty)
        #expect(tracker.removeAll() == [8, 9, 10])
        #expect(tracker.outstanding == 0)
    }

    @Test func returnedPublishIsReportedWithItsConfirm() {
        var tracker = ConfirmTracker<String>()
        for name in ["routable", "lost", "lost"] { _ = tracker.register(name) }
        let info = ConfirmTracker<String>.ReturnedInfo(replyCode: 312, replyText: "NO_ROUTE")
        #expect(tracker.markReturned(info) { $0 == "lost" })
        let settled = tracker.settle(deliveryTag: 3, multiple: true)
        #expect(settled.map(\.returned) == [nil, info, nil], "only the earliest matching publish is marked")
    }

    @Test func overduePublishesExpireFromTheHead() {
        var tracker = ConfirmTracker<Int>()
        for deadline in [1, 2, 3, 4] { _ = tracker.register(deadline) }
        _ = tracker.settle(deliveryTag: 2, multiple: false)  // settled out of order: skipped by expiry
        #expect(tracker.expire { $0 <= 3 } == [1, 3])
        #expect(tracker.outstanding == 1)
        #expect(tracker.expire { $0 <= 3 }.isEmpty)
        #expect(
            tracker.settle(deliveryTag: 1, multiple: false).isEmpty, "a late confirm of an expired publish is ignored")
        #expect(tracker.settle(deliveryTag: 4, multiple: true).map(\.token) == [4])
    }

    @Test func compactsAfterManySettlements() {
        var tracker = ConfirmTracker<Int>()
        for round in 0..<5 {
            for n in 0..<3000 { _ = tracker.register(round * 3000 + n) }
            let last = tracker.nextSequence - 1
            #expect(tracker.settle(deliveryTag: last - 1, multiple: true).count == 2999)
            #expect(tracker.settle(deliveryTag: last, multiple: false).count == 1)
        }
        #expect(tracker.outstanding == 0)
    }
}
