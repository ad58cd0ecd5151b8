import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

/// Events of real deliveries, read from a queue bound to `warren.events` as a ledger's would be.
@Suite("Job events against RabbitMQ", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct EventsBrokerTests {
    @Test func aWorkerAndAPublisherReportEveryStepOfAJob() async throws {
        try await withCleanups { cleanups in
            let url = try await TestBroker.url()
            let queue = TestBroker.uniqueName()
            let listener = TestBroker.uniqueName("events-listener")
            let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url), logger: TestBroker.logger)
            cleanups.add { await connection.close() }
            let channel = try await connection.openChannel()
            try await channel.exchangeDeclare("warren.events", type: .topic, durable: true)
            _ = try await channel.queueDeclare(listener, durable: false, autoDelete: true)
            try await channel.queueBind(listener, exchange: "warren.events", routingKey: "\(queue).*")

            let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
            try await transport.start()
            cleanups.add { await transport.close() }
            let events = WarrenEventPublisher(
                transport: transport, options: EventOptions(flushInterval: .milliseconds(20)),
                logger: TestBroker.quietLogger())
            let registration = HandlerRegistration(
                WelcomeEmail.self, queue: queue,
                options: HandlerOptions(retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.milliseconds(200)])))
            ) { email, context in
                if email.email.hasPrefix("flaky"), context.attempt == 1 { throw Flaky() }
                if email.email.hasPrefix("bounce") { throw Reject("550 no such mailbox") }
            }
            let worker = try await RunningWorker.start(
                queue: queue, registrations: [registration], configuration: WorkerConfiguration(events: events))
            cleanups.add { await worker.stop() }
            let publisher = WarrenPublisher(transport: transport, events: events)
            try await publisher.publish(
                WelcomeEmail(userId: "1", email: "ok@example.com"), to: .queue(queue), messageID: "ok")
            try await publisher.publish(
                WelcomeEmail(userId: "2", email: "flaky@example.com"), to: .queue(queue), messageID: "flaky")
            try await publisher.publish(
                WelcomeEmail(userId: "3", email: "bounce@example.com"), to: .queue(queue), messageID: "bounce")

            var received: [WarrenEvent] = []
            var routingKeys: Set<String> = []
            var types: Set<String?> = []
            let complete = try await eventually(timeout: .seconds(15)) {
                while let message = try await channel.get(queue: listener) {
                    routingKeys.insert(message.delivery.routingKey)
                    types.insert(message.delivery.properties.type)
                    received += try WarrenEvent.decodeBatch(message.delivery.body)
                    try message.delivery.ack()
                }
                return received.filter { $0.event != .published && $0.event != .started }.count == 4
            }
            #expect(complete, "\(received.map { "\($0.messageID ?? "") \($0.event)" })")
            #expect(types == ["warren.events"])
            // By attempt, a start before its settlement. (The publisher's confirm may come back after the worker started:
            // `published` is reported then, so it can be later than `started`.)
            // A settlement carrying `started_at_ms` stands for its attempt's start too (folded: it settled within the flush).
            func steps(_ id: String) -> [String] {
                let events = received.filter { $0.messageID == id }
                let attempts = events.filter { $0.event != .published }
                    .sorted {
                        ($0.attempt ?? 0, $0.event == .started ? 0 : 1) < (
                            $1.attempt ?? 0, $1.event == .started ? 0 : 1
                        )
                    }
                    .flatMap { $0.startedAtMs == nil ? [$0.event.rawValue] : ["started", $0.event.rawValue] }
                return events.filter { $0.event == .published }.map(\.event.rawValue) + attempts
            }
            #expect(steps("ok") == ["published", "started", "ack"])
            #expect(steps("flaky") == ["published", "started", "retry", "started", "ack"])
            #expect(steps("bounce") == ["published", "started", "dead-letter"])
            #expect(
                routingKeys.isSuperset(of: [
                    "\(queue).published", "\(queue).ack", "\(queue).retry", "\(queue).dead-letter",
                ]))

            let retry = try #require(received.first { $0.messageID == "flaky" && $0.event == .retry })
            #expect(retry.attempt == 1 && retry.error != nil)
            #expect((retry.nextAttemptAtMs ?? 0) >= retry.atMs + 200)
            let letter = try #require(received.first { $0.event == .deadLetter })
            #expect(letter.reason == "rejected" && letter.error?.contains("550") == true)
            #expect(
                letter.body == #"{"userId":"3","email":"bounce@example.com"}"# && letter.bodyEncoding == "utf8"
                    && letter.bodyTruncated == false)
            #expect(letter.headers?[WarrenHeader.publishedAt] != nil, "the message's own headers")
            let ack = try #require(received.first { $0.messageID == "ok" && $0.event == .ack })
            #expect(
                ack.durationMs != nil && ack.host != nil && ack.queue == queue && ack.type == WelcomeEmail.messageType)
            #expect(ack.attempt == 1 && ack.queueWaitMs != nil)
            if let start = ack.startedAtMs
                ?? received.first(where: { $0.messageID == "ok" && $0.event == .started })?.atMs
            {
                #expect(start <= ack.atMs)
            } else {
                Issue.record("the ok job's start is reported, on its own or folded into its ack")
            }
        }
    }

    @Test func withNobodyListeningEventsCostNothingAndFailNothing() async throws {
        try await withCleanups { cleanups in
            let url = try await TestBroker.url()
            let queue = TestBroker.uniqueName()
            let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
            try await transport.start()
            cleanups.add { await transport.close() }
            // An exchange of its own, with no queue bound: every batch is unroutable.
            let events = WarrenEventPublisher(
                transport: transport,
                options: EventOptions(exchange: TestBroker.uniqueName("events"), flushInterval: .milliseconds(10)),
                logger: TestBroker.quietLogger())
            for index in 0..<500 {
                events.record(WarrenEvent(event: .ack, messageID: "\(index)", type: "t", queue: queue, atMs: 1))
            }
            await events.flush()
            #expect(events.pending == 0, "sent (and dropped by the broker), not kept for ever")
            await events.close()
        }
    }
}
