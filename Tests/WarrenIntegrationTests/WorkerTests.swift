import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("Worker on RabbitMQ (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct WorkerTests {
    let recorder = Recorder()

    func registration(queue: String, retry: RetryPolicy, timeout: Duration? = .seconds(5)) -> HandlerRegistration {
        HandlerRegistration(WelcomeEmail.self, queue: queue, options: HandlerOptions(retry: retry, timeout: timeout)) {
            [recorder] email, context in
            recorder.record(email, context)
            let domain = email.email.split(separator: "@").last.map(String.init) ?? ""
            switch domain {
            case "flaky.example": if context.attempt < 3 { throw Flaky() }
            case "bounce.example": throw Reject("mailbox does not exist")
            case "broken.example": throw Flaky()
            case "slow.example": try await Task.sleep(for: .seconds(3))
            default: break
            }
        }
    }

    @Test func successIsAcked() async throws {
        let queue = TestBroker.uniqueName()
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, retry: .default)])
        try await worker.publish(WelcomeEmail(userId: "1", email: "ok@example.com"))
        #expect(try await eventually { recorder.calls(for: "ok@example.com").count == 1 })
        let connection = try await worker.connect()
        let channel = try await connection.openChannel()
        #expect(try await eventually { try await channel.queueStatus(queue).messageCount == 0 })
        await connection.close()
        await worker.stop()
        #expect(recorder.calls(for: "ok@example.com").map(\.attempt) == [1])
        #expect(try await worker.deadLetters().isEmpty)
    }

    @Test func transientFailuresAreRetriedThroughDelayQueuesWithTheirDelays() async throws {
        let queue = TestBroker.uniqueName()
        let policy = RetryPolicy(maxAttempts: 4, backoff: .explicit([.milliseconds(500), .milliseconds(1000)]))
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, retry: policy)])
        try await worker.publish(WelcomeEmail(userId: "2", email: "a@flaky.example"))
        #expect(try await eventually { recorder.calls(for: "a@flaky.example").count == 3 })
        let calls = recorder.calls(for: "a@flaky.example")
        #expect(calls.map(\.attempt) == [1, 2, 3])
        let firstWait = calls[1].at - calls[0].at
        let secondWait = calls[2].at - calls[1].at
        // Never before its delay; the upper bounds only catch a delay ignored (room for a starved two-core machine).
        #expect(firstWait >= .milliseconds(500) && firstWait < .milliseconds(5000), "first retry after \(firstWait)")
        #expect(
            secondWait >= .milliseconds(1000) && secondWait < .milliseconds(6000), "second retry after \(secondWait)")

        // A graceful stop waits for the third attempt to be settled, and a retry's copy is confirmed before its
        // original is acked: had the success been retried, the copy would now wait in a queue nobody consumes.
        await worker.shutdownGracefully()
        let connection = try await worker.connect()
        let channel = try await connection.openChannel()
        let topology = WarrenTopology(queue: queue)
        #expect(try await channel.queueStatus(topology.delayQueue(for: .milliseconds(500))).messageCount == 0)
        #expect(try await channel.queueStatus(topology.delayQueue(for: .milliseconds(1000))).messageCount == 0)
        #expect(try await channel.queueStatus(queue).messageCount == 0, "a success is not retried")
        await connection.close()
        #expect(recorder.calls(for: "a@flaky.example").count == 3)
        #expect(try await worker.deadLetters().isEmpty)
    }

    @Test func theLastFailedAttemptGoesToTheDeadLettersWithItsStory() async throws {
        let queue = TestBroker.uniqueName()
        let policy = RetryPolicy(maxAttempts: 3, backoff: .explicit([.milliseconds(100)]))
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, retry: policy)])
        try await worker.publish(WelcomeEmail(userId: "3", email: "x@broken.example"))
        #expect(try await eventually { try await worker.deadLetters().count == 1 })
        await worker.stop()
        #expect(recorder.calls(for: "x@broken.example").map(\.attempt) == [1, 2, 3])
        let letter = try #require(try await worker.deadLetters().first)
        let headers = try #require(letter.properties.headers)
        #expect(headers[WarrenHeader.reason]?.stringValue == "retries-exhausted")
        #expect(headers[WarrenHeader.attempts]?.int64Value == 3)
        #expect(headers[WarrenHeader.originalQueue]?.stringValue == queue)
        #expect(headers[WarrenHeader.originalExchange]?.stringValue == "")
        #expect(headers[WarrenHeader.errorType]?.stringValue?.contains("Flaky") == true)
        #expect(headers[WarrenHeader.errorMessage]?.stringValue?.contains("mail server busy") == true)
        #expect(headers[WarrenHeader.firstFailureAt]?.int64Value != nil)
        #expect(headers[WarrenHeader.lastFailureAt]?.int64Value != nil)
        #expect(headers[WarrenHeader.host]?.stringValue?.isEmpty == false)
        #expect(letter.properties.type == WelcomeEmail.messageType)
        #expect(String(decoding: letter.body, as: UTF8.self).contains("x@broken.example"), "the body is kept unchanged")
    }

    @Test func permanentErrorsAndBadInputGoToTheDeadLettersAtOnce() async throws {
        let queue = TestBroker.uniqueName()
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, retry: .default)])
        try await worker.publish(WelcomeEmail(userId: "4", email: "b@bounce.example"))
        try await worker.publish(#"{"userId": 5"#, messageID: "malformed")
        try await worker.publish(#"{"userId":"6"}"#, messageID: "missing-field")
        try await worker.publish(#"{}"#, type: "sms.welcome", messageID: "unknown-type")
        try await worker.publish(#"{}"#, type: nil, messageID: "no-type")
        try await worker.publish("<xml/>", contentType: "text/xml", messageID: "xml")
        #expect(try await eventually { try await worker.deadLetters().count == 6 })
        await worker.stop()
        #expect(recorder.calls(for: "b@bounce.example").map(\.attempt) == [1])
        let reasons = Dictionary(
            try await worker.deadLetters().map {
                ($0.properties.messageID ?? "bounce", $0.properties.headers?[WarrenHeader.reason]?.stringValue ?? "")
            },
            uniquingKeysWith: { first, _ in first })
        #expect(reasons["malformed"] == "undecodable")
        #expect(reasons["missing-field"] == "undecodable")
        #expect(reasons["unknown-type"] == "unknown-type")
        #expect(reasons["no-type"] == "unknown-type")
        #expect(reasons["xml"] == "unsupported-content-type")
        #expect(reasons.values.filter { $0 == "rejected" }.count == 1)
    }

    @Test func aTimeoutCountsAsATransientFailure() async throws {
        let queue = TestBroker.uniqueName()
        let policy = RetryPolicy(maxAttempts: 2, backoff: .explicit([.milliseconds(100)]))
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, retry: policy, timeout: .milliseconds(300))])
        try await worker.publish(WelcomeEmail(userId: "7", email: "s@slow.example"))
        #expect(try await eventually { try await worker.deadLetters().count == 1 })
        await worker.stop()
        #expect(recorder.calls(for: "s@slow.example").map(\.attempt) == [1, 2])
        let letter = try #require(try await worker.deadLetters().first)
        #expect(letter.properties.headers?[WarrenHeader.errorMessage]?.stringValue?.contains("timed out") == true)
    }

    @Test func aMessageFromAForeignClientIsHandled() async throws {
        let queue = TestBroker.uniqueName()
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, retry: .default)])
        let published = try await runProcess(
            "/usr/bin/amqp-publish",
            [
                // librabbitmq's own URL parser reads a trailing "/" as the empty vhost, so leave it off.
                "--url", String(worker.url.dropLast(worker.url.hasSuffix("/") ? 1 : 0)), "-r", queue, "-C",
                "application/json", "-p",
                "-H", "\(WarrenHeader.messageType): \(WelcomeEmail.messageType)",
                "-b", #"{"userId":"8","email":"foreign@example.com"}"#,
            ])
        #expect(published.status == 0, "\(published)")
        #expect(try await eventually { recorder.calls(for: "foreign@example.com").count == 1 })
        await worker.stop()
    }

    @Test func aQueueThatContradictsTheTopologyIsRefused() async throws {
        let queue = TestBroker.uniqueName()
        let url = try await TestBroker.url()
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        try await channel.queueDeclare(queue, durable: true, arguments: ["x-max-length": .int32(10)])
        let worker = Worker(
            transport: RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)]),
            registrations: [registration(queue: queue, retry: .default)])
        do {
            try await worker.run()
            Issue.record("the worker must refuse a contradicting queue")
        } catch let error as WarrenError {
            #expect(error.code == .topologyConflict)
            #expect(error.message.contains(queue))
            #expect(
                error.message.contains(#"x-queue-type "classic""#),
                "the arguments as a person reads them: \(error.message)")
            #expect(!error.message.contains("AMQPFieldValue"), "\(error.message)")
        }
        try await channel.queueDelete(queue)
        await connection.close()
    }

    /// Where an existing queue contradicts Warren's topology: which queue, how it was declared before, and what Warren
    /// declares (its queue type, or classic).
    enum Conflict: String, CaseIterable, Sendable {
        case workQueue, delayQueue, deadLetterQueue, quorumWhereClassicIsAsked, classicWhereQuorumIsAsked
    }

    /// Every conflict is refused with `topologyConflict` naming the queue, by `WarrenPublisher.declare` and by the
    /// worker (which would otherwise consume: that is recorded as a failure and the worker stopped), and the existing
    /// queue is left as it was.
    @Test(arguments: Conflict.allCases)
    func aQueueThatContradictsTheTopologyIsRefusedWhereverItIs(_ conflict: Conflict) async throws {
        let queue = TestBroker.uniqueName(conflict.rawValue)
        let url = try await TestBroker.url()
        let topology = WarrenTopology(queue: queue)
        let retry = RetryPolicy(maxAttempts: 2, backoff: .explicit([.seconds(1)]))
        let (existing, arguments): (String, AMQPTable) =
            switch conflict {
            case .workQueue: (queue, ["x-max-length": .int32(10)])
            case .delayQueue: (topology.delayQueue(for: .seconds(1)), ["x-max-length": .int32(10)])
            case .deadLetterQueue: (topology.deadLetterQueue, ["x-max-length": .int32(10)])
            case .quorumWhereClassicIsAsked: (queue, ["x-queue-type": "quorum"])
            case .classicWhereQuorumIsAsked: (queue, ["x-queue-type": "classic"])
            }
        try await withCleanups { cleanups in
            _ = try await withConnection { connection in
                try await connection.openChannel().queueDeclare(existing, durable: true, arguments: arguments)
            }
            cleanups.add {
                _ = try? await withConnection { connection in
                    let channel = try await connection.openChannel()
                    for name in [
                        queue, existing, topology.deadLetterQueue, topology.delayQueue(for: .seconds(1)),
                        topology.redeliveredQueue, topology.manifestQueue,
                    ] {
                        _ = try? await channel.queueDelete(name)
                    }
                }
            }
            func transport() throws -> RabbitMQTransport {
                RabbitMQTransport(
                    endpoints: [try AMQPEndpoint(uri: url)],
                    queueType: conflict == .classicWhereQuorumIsAsked ? .quorum : .classic,
                    logger: TestBroker.quietLogger())
            }
            func expectRefused(_ error: (any Error)?, by whom: String) {
                guard let error = error as? WarrenError else {
                    Issue.record("\(conflict), \(whom): \(String(describing: error)) is not a refusal")
                    return
                }
                #expect(
                    error.code == .topologyConflict && error.message.contains(existing),
                    "\(conflict), \(whom): \(error.message)")
            }

            let publishing = try transport()
            cleanups.add { await publishing.close() }
            do {
                try await WarrenPublisher(transport: publishing).declare(queue: queue, retry: retry)
                Issue.record("\(conflict): WarrenPublisher.declare did not refuse")
            } catch {
                expectRefused(error, by: "the publisher")
            }

            let registration = HandlerRegistration(
                WelcomeEmail.self, queue: queue, options: HandlerOptions(retry: retry)
            ) { _, _ in }
            let worker = Worker(
                transport: try transport(), registrations: [registration], logger: TestBroker.quietLogger())
            var refusal: (any Error)?
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await worker.run() }
                    group.addTask {
                        // A worker that got past the conflict consumes: then it is stopped and the test fails.
                        if (try? await worker.waitUntilConsuming(timeout: .seconds(30))) != nil {
                            Issue.record("\(conflict): the worker consumes despite the conflict")
                            worker.shutdown()
                        }
                    }
                    try await group.waitForAll()
                }
            } catch {
                refusal = error
            }
            expectRefused(refusal, by: "the worker")

            // The existing queue is as it was: declared again with its own arguments, it is accepted.
            _ = try await withConnection { connection in
                try await connection.openChannel().queueDeclare(existing, durable: true, arguments: arguments)
            }
        }
    }

    @Test func aServiceThatOnlyPublishesDeclaresItsQueueBeforeAnyWorkerRuns() async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        let publisher = WarrenPublisher(transport: transport, appID: "signup-service")
        let policy = RetryPolicy(maxAttempts: 3, backoff: .explicit([.seconds(1), .seconds(2)]))
        let before = await #expect(throws: AMQPError.self, "nobody declared the queue yet") {
            try await transport.start()
            try await publisher.publish(WelcomeEmail(userId: "0", email: "early@example.com"), to: .queue(queue))
        }
        #expect(before?.code == .unroutable)
        try await publisher.declare(queue: queue, retry: policy)
        try await publisher.declare(queue: queue, retry: policy)  // idempotent
        try await publisher.publish(WelcomeEmail(userId: "1", email: "a@example.com"), to: .queue(queue))
        await transport.close()

        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let topology = WarrenTopology(queue: queue)
        #expect(try await channel.queueStatus(queue).messageCount == 1)
        for name in [
            topology.deadLetterQueue, topology.delayQueue(for: .seconds(1)), topology.delayQueue(for: .seconds(2)),
        ] {
            #expect(try await channel.queueStatus(name).messageCount == 0, "\(name) exists")
        }
        // A worker started afterwards finds the queues as it declares them, and handles the message.
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, retry: policy)])
        #expect(try await eventually { recorder.calls(for: "a@example.com").count == 1 })
        await worker.shutdownGracefully()
        for name in [
            queue, topology.deadLetterQueue, topology.redeliveredQueue, topology.manifestQueue,
            topology.delayQueue(for: .seconds(1)), topology.delayQueue(for: .seconds(2)),
        ] {
            _ = try? await channel.queueDelete(name)
        }
        await connection.close()
    }

    @Test func deadLettersAreReadThroughTheTransportAndStayWhereTheyAre() async throws {
        let queue = TestBroker.uniqueName()
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, retry: .never)])
        let url = try await TestBroker.url()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        try await transport.start()
        let publisher = WarrenPublisher(transport: transport)
        for n in 0..<3 {
            try await publisher.publish(WelcomeEmail(userId: "\(n)", email: "b\(n)@bounce.example"), to: .queue(queue))
        }
        #expect(try await eventually { try await transport.deadLetters(of: queue).count == 3 })
        let two = try await transport.deadLetters(of: queue, limit: 2)
        #expect(two.count == 2 && two.allSatisfy { $0.reason?.kind == .rejected && $0.originalQueue == queue })
        #expect(
            try await transport.deadLetters(of: queue).map(\.messageID)
                == (try await worker.deadLetters()).map(\.messageID), "reading takes nothing")
        let missing = await #expect(throws: WarrenError.self) { try await transport.deadLetters(of: "no.such.queue") }
        #expect(missing?.message.contains("no.such.queue.dead-letters") == true)
        await transport.close()
        await worker.shutdownGracefully()
    }

    @Test func aRefusedPublishFailsAtOnceAndOnlyItsChannelIsReopened() async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)])
        try await transport.start()
        try await transport.prepare(queue: queue, delays: [])
        let connection = try #require(transport.connection)
        let clock = ContinuousClock()
        let started = clock.now
        await #expect(throws: AMQPError.self) {
            try await transport.publish(
                [1], to: .exchange("no-such-exchange-\(UUID())", routingKey: "x"), properties: AMQPProperties())
        }
        // Not waited on as a lost connection would be (30 s of publish recovery); 10 s leaves room for a loaded machine.
        #expect(clock.now - started < .seconds(10), "a refusal is not waited on")
        try await transport.publish([2], to: .queue(queue), properties: AMQPProperties())
        #expect(
            transport.connection === connection, "the connection was kept; only the publishing channel was reopened")
        await transport.close()
        await #expect(throws: AMQPError.self) {
            try await transport.publish([3], to: .queue(queue), properties: AMQPProperties())
        }
    }

    @Test func aBatchIsPublishedPipelinedAndEachMessageGetsItsOwnResult() async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)])
        try await transport.start()
        try await transport.prepare(queue: queue, delays: [])
        let publisher = WarrenPublisher(transport: transport)
        let emails = (0..<200).map { WelcomeEmail(userId: "\($0)", email: "batch\($0)@example.com") }
        let results = await publisher.publish(contentsOf: emails, to: .queue(queue), correlationID: "batch")
        let ids = try results.map { try $0.get() }
        #expect(Set(ids).count == 200, "one id per message")
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        #expect(try await channel.queueStatus(queue).messageCount == 200)
        let first = try #require(try await channel.get(queue: queue, noAck: true))
        #expect(first.delivery.properties.messageID == ids[0], "in order")
        #expect(first.delivery.properties.correlationID == "batch")

        // Refused as a whole (no such exchange): every message fails, the transport keeps working.
        let refused = await publisher.publish(
            contentsOf: Array(emails.prefix(3)), to: .exchange("no-such-exchange-\(UUID())", routingKey: "x"))
        #expect(refused.allSatisfy { if case .failure = $0 { true } else { false } })
        #expect(
            await publisher.publish(contentsOf: Array(emails.prefix(2)), to: .queue(queue)).allSatisfy {
                (try? $0.get()) != nil
            })
        await connection.close()
        await transport.close()
    }
}
