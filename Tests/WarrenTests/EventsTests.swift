import Foundation
import Logging
import Synchronization
import Testing
import WarrenAMQP
import WarrenTestSupport
import WarrenTesting

@_spi(WarrenTransport) @testable import Warren

@Suite("Job events")
struct EventsTests {
    @Test func aBatchIsAJSONArrayInSnakeCaseThatDecodesBack() throws {
        var deadLetter = WarrenEvent(
            event: .deadLetter, messageID: "m-1", type: "email.welcome", queue: "emails", attempt: 3,
            atMs: 1_700_000_000_123,
            queueWaitMs: 12, durationMs: 40, error: "550 \"no\" mailbox\n\u{1}", reason: "rejected", host: "w-1",
            traceID: "4bf92f3577b34da6a3ce929d0e0e4736", correlationID: "order-9")
        deadLetter.headers = ["x-app": "é", "x-warren-attempt": "3"]
        deadLetter.body = #"{"userId":"1"}"#
        deadLetter.bodyEncoding = "utf8"
        deadLetter.bodyTruncated = false
        var retry = WarrenEvent(
            event: .retry, messageID: "m-2", type: nil, queue: "emails", attempt: 1, atMs: 5, nextAttemptAtMs: 1005)
        retry.queueWaitApproxS = 3
        (retry.dueAtMs, retry.schedule, retry.scheduledForMs) = (900, "cleanup", 800)
        let body = WarrenEvent.encodeBatch([deadLetter, retry])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]])
        #expect(json.count == 2)
        #expect(json[0]["schema"] as? Int == 1 && json[0]["event"] as? String == "dead-letter")
        #expect(json[0]["message_id"] as? String == "m-1" && json[0]["at_ms"] as? Int64 == 1_700_000_000_123)
        #expect(
            json[0]["queue_wait_ms"] as? Int == 12 && json[0]["duration_ms"] as? Int == 40 && json[0]["trace_id"] != nil
        )
        #expect(
            json[0]["body_truncated"] as? Bool == false && (json[0]["headers"] as? [String: String])?["x-app"] == "é")
        #expect(json[1]["next_attempt_at_ms"] as? Int == 1005 && json[1]["type"] == nil, "absent fields are left out")
        #expect(
            json[1]["queue_wait_approx_s"] as? Int == 3 && json[1]["queue_wait_ms"] == nil
                && json[0]["queue_wait_approx_s"] == nil)
        #expect(
            json[1]["due_at_ms"] as? Int == 900 && json[1]["schedule"] as? String == "cleanup"
                && json[1]["scheduled_for_ms"] as? Int == 800 && json[0]["schedule"] == nil)
        #expect(
            try WarrenEvent.decodeBatch(body) == [deadLetter, retry], "Foundation reads what the fast writer wrote")
        #expect(throws: DecodingError.self) {
            try WarrenEvent.decodeBatch(Array(#"[{"schema":2,"event":"ack","queue":"q","at_ms":1}]"#.utf8))
        }
    }

    @Test func aDueTimeAndAScheduledRunAreReadFromTheHeadersAndHostileValuesLeftOut() {
        let table: [(AMQPTable?, Int64?, String?, Int64?)] = [
            (nil, nil, nil, nil),
            ([WarrenHeader.dueAt: .int64(1_800_000_000_000)], 1_800_000_000_000, nil, nil),
            ([WarrenHeader.dueAt: .int64(.max)], nil, nil, nil),
            ([WarrenHeader.dueAt: .int64(-1)], nil, nil, nil),
            ([WarrenHeader.dueAt: "soon"], nil, nil, nil),
            ([ScheduleHeader.schedule: "cleanup", ScheduleHeader.scheduledFor: .int64(5_000)], nil, "cleanup", 5_000),
            ([ScheduleHeader.schedule: "cleanup"], nil, nil, nil),
            ([ScheduleHeader.schedule: "", ScheduleHeader.scheduledFor: .int64(5_000)], nil, nil, nil),
            ([ScheduleHeader.schedule: "cleanup", ScheduleHeader.scheduledFor: .int64(.min)], nil, nil, nil),
            ([ScheduleHeader.schedule: .int64(3), ScheduleHeader.scheduledFor: .int64(5_000)], nil, nil, nil),
        ]
        for (headers, dueAt, schedule, scheduledFor) in table {
            var event = WarrenEvent(event: .started, messageID: "m", type: nil, queue: "q", atMs: 1)
            event.describeTiming(from: headers)
            #expect(event.dueAtMs == dueAt, "\(String(describing: headers))")
            #expect(
                event.schedule == schedule && event.scheduledForMs == scheduledFor, "\(String(describing: headers))")
        }
    }

    @Test func aJobDueLaterHasWaitedInItsQueueOnlySinceItWasDue() async throws {
        let registration = HandlerRegistration(WelcomeEmail.self, queue: "emails") { _, _ in }
        let harness = try await WarrenTestHarness(registrations: [registration])
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let settled = try await harness.send(
            WelcomeEmail(userId: "1", email: "a@example.com"), to: "emails",
            headers: [WarrenHeader.publishedAt: .int64(now - 3_600_000), WarrenHeader.dueAt: .int64(now - 200)])
        let wait = try #require(settled.queueWait)
        #expect(wait < .seconds(60), "waited since its due time, not its publish an hour ago: \(wait)")
        let hostile = try await harness.send(
            WelcomeEmail(userId: "2", email: "b@example.com"), to: "emails",
            headers: [WarrenHeader.publishedAt: .int64(now - 1_000), WarrenHeader.dueAt: .int64(.max)])
        #expect(try #require(hostile.queueWait) >= .milliseconds(900), "an implausible due time is ignored")
        await harness.stop()
    }

    /// A transport whose publishes never return while `blocked`: a broker that has stopped taking messages.
    final class StuckTransport: WarrenTransport, Sendable {
        let blocked = AwaitableState(true)
        /// Publishes begun (stuck or not).
        let attempts = AwaitableState(0)
        let published = Mutex<[OutboundMessage]>([])
        func start() async throws {}
        func prepare(queue: String, delays: Set<Duration>) async throws {}
        func consume(queue: String, prefetch: UInt16) async throws -> TransportConsumer {
            TransportConsumer(next: { nil }, cancel: {}, close: {})
        }
        func publish(_ body: [UInt8], to destination: Destination, properties: AMQPProperties) async throws {
            attempts.update { $0 += 1 }
            try await blocked.wait { !$0 }
            published.withLock {
                $0.append(OutboundMessage(body: body, destination: destination, properties: properties))
            }
        }
        func publish(contentsOf messages: [OutboundMessage]) async -> [Result<Void, any Error>] {
            var results: [Result<Void, any Error>] = []
            for message in messages {
                do {
                    try await publish(message.body, to: message.destination, properties: message.properties)
                    results.append(.success(()))
                } catch { results.append(.failure(error)) }
            }
            return results
        }
        func close() async {}
        func isRecoverable(_ error: any Error) -> Bool { true }
    }

    @Test func aStartSettledWithinTheSameFlushIsFoldedIntoItsSettlement() throws {
        func event(_ kind: WarrenEvent.Kind, _ id: String, attempt: Int?, at: Int64) -> WarrenEvent {
            WarrenEvent(
                event: kind, messageID: id, type: "t", queue: "q", attempt: attempt, atMs: at,
                queueWaitMs: attempt.map { _ in 7 })
        }
        let folded = WarrenEventPublisher.foldingStarts([
            event(.started, "a", attempt: 1, at: 10), event(.started, "b", attempt: 1, at: 11),
            event(.published, "c", attempt: nil, at: 12),
            event(.ack, "a", attempt: 1, at: 15), event(.retry, "x", attempt: 3, at: 16),
            event(.started, "a", attempt: 2, at: 20),
        ])
        #expect(
            folded.map { "\($0.messageID!) \($0.event)" } == [
                "b started", "c published", "a ack", "x retry", "a started",
            ])
        #expect(folded[2].startedAtMs == 10 && folded[2].queueWaitMs == 7, "the start's time on its settlement")
        #expect(folded[3].startedAtMs == nil, "a settlement whose start went out earlier stays as it is")
        let batch = WarrenEvent.encodeBatch(folded)
        #expect(String(decoding: batch, as: UTF8.self).contains(#""started_at_ms":10"#))
        #expect(try WarrenEvent.decodeBatch(batch) == folded)
    }

    @Test func aFullBufferDropsAndCountsEventsWithoutHoldingAnyoneUp() async throws {
        _ = testMetrics  // the process's metrics, bootstrapped before the counter is made
        let transport = StuckTransport()
        // An exchange of its own: the counter is labelled by exchange, so other tests' events do not count here.
        let exchange = TestBroker.uniqueName("events")
        let events = WarrenEventPublisher(
            transport: transport,
            options: EventOptions(
                exchange: exchange, batchSize: 10, flushInterval: .milliseconds(10), bufferLimit: 100),
            logger: TestBroker.quietLogger())
        let before = testMetrics.counterTotal(
            label: "warren_events_dropped_total", dimensions: [("exchange", exchange)])
        let sending = Task { await events.sendWhileRunning() }
        let clock = ContinuousClock()
        let started = clock.now
        for index in 0..<1_000 {
            events.record(
                WarrenEvent(event: .ack, messageID: "\(index)", type: "t", queue: "q", attempt: 1, atMs: Int64(index)))
        }
        // The broker never answers: recording that waited for it would never end (10 s: room for a starved machine).
        #expect(clock.now - started < .seconds(10), "recording never waits for the broker")
        #expect(events.pending <= 100)
        let dropped =
            testMetrics.counterTotal(label: "warren_events_dropped_total", dimensions: [("exchange", exchange)])
            - before
        // The flusher holds one batch of up to 320 (32 x 10) while the broker is stuck: at most 100 wait, the rest
        // dropped.
        #expect(dropped >= 1_000 - 100 - 320, "dropped \(dropped)")
        transport.blocked.update { $0 = false }
        sending.cancel()
        await sending.value
        await events.close()
        let sent = transport.published.withLock { $0 }
        let delivered = try sent.flatMap { try WarrenEvent.decodeBatch($0.body) }
        #expect(delivered.count + Int(dropped) == 1_000, "every event is either sent or counted as dropped")
        #expect(sent.allSatisfy { $0.destination == .broadcast(exchange: exchange, routingKey: "q.ack") })
        #expect(
            sent.allSatisfy {
                $0.properties.type == "warren.events" && (try? WarrenEvent.decodeBatch($0.body).count) ?? 0 <= 10
            })
    }
}

extension EventsTests {
    @Test func eventsThatNothingSendsAreSaidOnceAndASenderSendsThem() async throws {
        let logs = LogLines()
        let logger = Logger(label: "events-test") { _ in CapturingHandler(lines: logs) }
        let transport = StuckTransport()
        transport.blocked.update { $0 = false }
        let events = WarrenEventPublisher(
            transport: transport, options: EventOptions(exchange: TestBroker.uniqueName("events"), batchSize: 10),
            logger: logger)
        func warnings() -> Int {
            logs.all.filter { ($0["message"]?.description ?? "").contains("nothing sends them") }.count
        }
        // Nothing runs a sender: once a batch waits, one warning, however many more events come.
        for index in 0..<30 {
            events.record(WarrenEvent(event: .ack, messageID: "\(index)", type: "t", queue: "q", atMs: 1))
        }
        #expect(warnings() == 1)
        #expect(events.pending == 30, "kept, not sent")
        // A sender (what run() and a worker run) takes them.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await events.sendWhileRunning() }
            defer { group.cancelAll() }
            guard try await eventually({ transport.published.withLock { $0.count } == 3 }) else {
                throw TestFailure("\(transport.published.withLock { $0.count }) batches sent")
            }
        }
        #expect(events.pending == 0 && transport.published.withLock { $0.count } == 3, "three batches of ten")
        #expect(warnings() == 1)
        await events.close()
    }

    @Test func aFlushWithATimeoutReturnsAlthoughTheBrokerTakesNothing() async throws {
        let transport = StuckTransport()
        let events = WarrenEventPublisher(
            transport: transport, options: EventOptions(flushInterval: .milliseconds(10)),
            logger: TestBroker.quietLogger())
        let sending = Task { await events.sendWhileRunning() }
        for index in 0..<10 {
            events.record(WarrenEvent(event: .ack, messageID: "\(index)", type: "t", queue: "q", atMs: 1))
        }
        #expect(
            await transport.attempts.wait(until: { $0 >= 1 }, timeout: .seconds(10)),
            "the background flush is stuck in the broker")
        let clock = ContinuousClock()
        let started = clock.now
        await events.close(timeout: .milliseconds(300))
        // 300 ms asked; 5 s leaves room for a starved machine and still tells it from a broker that never answers.
        #expect(clock.now - started < .seconds(5), "a shutdown is not held up by a broker that is away")
        #expect(transport.published.withLock { $0.isEmpty })
        transport.blocked.update { $0 = false }
        sending.cancel()
        await sending.value
    }
}
