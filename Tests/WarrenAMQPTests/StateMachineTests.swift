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

@Suite("Content reassembly")
struct ContentAssemblerTests {
    @Test func headerThenBodiesCompletesAMessage() {
        var assembler = ContentAssembler<String>()
        guard case .incomplete = assembler.begin("deliver") else {
            Issue.record("begin")
            return
        }
        guard case .incomplete = assembler.header(bodySize: 5, properties: AMQPProperties(type: "t")) else {
            Issue.record("header")
            return
        }
        let first: [UInt8] = [1, 2]
        let second: [UInt8] = [3, 4, 5]
        guard case .incomplete = first.withUnsafeBytes({ assembler.body($0) }) else {
            Issue.record("body 1")
            return
        }
        guard case .complete(let method, let properties, let body) = second.withUnsafeBytes({ assembler.body($0) })
        else {
            Issue.record("body 2")
            return
        }
        #expect(method == "deliver")
        #expect(properties.type == "t")
        #expect(body == [1, 2, 3, 4, 5])
        #expect(assembler.isIdle)
    }

    @Test func emptyBodyCompletesAtTheHeader() {
        var assembler = ContentAssembler<Int>()
        _ = assembler.begin(1)
        guard case .complete(_, _, let body) = assembler.header(bodySize: 0, properties: AMQPProperties()) else {
            Issue.record("expected completion")
            return
        }
        #expect(body.isEmpty)
    }

    @Test func framesOutOfOrderAreProtocolViolations() {
        var assembler = ContentAssembler<Int>()
        guard case .protocolViolation = assembler.header(bodySize: 1, properties: AMQPProperties()) else {
            Issue.record("header without method")
            return
        }
        let byte: [UInt8] = [1]
        guard case .protocolViolation = byte.withUnsafeBytes({ assembler.body($0) }) else {
            Issue.record("body without header")
            return
        }
        _ = assembler.begin(1)
        guard case .protocolViolation = assembler.begin(2) else {
            Issue.record("method during content")
            return
        }
        var overflow = ContentAssembler<Int>()
        _ = overflow.begin(1)
        _ = overflow.header(bodySize: 1, properties: AMQPProperties())
        let two: [UInt8] = [1, 2]
        guard case .protocolViolation = two.withUnsafeBytes({ overflow.body($0) }) else {
            Issue.record("too long")
            return
        }
    }
}

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

@Suite("A consumer's buffer")
struct ConsumerSinkTests {
    func message(_ tag: Int) -> InboundMessage {
        InboundMessage(
            body: [], properties: AMQPProperties(), deliveryTag: UInt64(tag), redelivered: false, exchange: "",
            routingKey: "q", consumerTag: "c", messageCount: 0)
    }

    func tags(_ sink: ConsumerSink, _ count: Int) async throws -> [UInt64] {
        var tags: [UInt64] = []
        for _ in 0..<count { tags.append(try #require(try await sink.next()).deliveryTag) }
        return tags
    }

    @Test func deliveriesComeOutInOrderWhileMoreArriveBetweenTakes() async throws {
        let sink = ConsumerSink()
        for tag in 1...5 { _ = sink.yield(message(tag)) }
        #expect(try await tags(sink, 2) == [1, 2], "the first take moves all five out of the shared buffer")
        for tag in 6...8 { _ = sink.yield(message(tag)) }
        #expect(try await tags(sink, 6) == [3, 4, 5, 6, 7, 8])
    }

    @Test func theSequenceEndsOnlyAfterWhatWasBuffered() async throws {
        let sink = ConsumerSink()
        for tag in 1...3 { _ = sink.yield(message(tag)) }
        #expect(try await sink.next()?.deliveryTag == 1)
        sink.finish(AMQPError(.consumerCancelled, message: "queue deleted"))
        #expect(try await tags(sink, 2) == [2, 3])
        await #expect(throws: AMQPError.self) { try await sink.next() }
    }

    @Test func aNormalEndAfterTheBufferReturnsNil() async throws {
        let sink = ConsumerSink()
        _ = sink.yield(message(1))
        sink.finish(nil)
        #expect(!sink.yield(message(2)), "nothing is buffered after the end")
        #expect(try await sink.next()?.deliveryTag == 1)
        #expect(try await sink.next() == nil)
    }

    @Test func aCancelledTaskThrowsEvenWithDeliveriesTakenOut() async throws {
        let sink = ConsumerSink()
        for tag in 1...3 { _ = sink.yield(message(tag)) }
        let task = Task {
            _ = try await sink.next()
            withUnsafeCurrentTask { $0?.cancel() }
            return try await sink.next()
        }
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
