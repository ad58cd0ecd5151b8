import Foundation
import InMemoryTracing
import Logging
import Synchronization
import Testing
import Tracing
import WarrenAMQP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

/// The same against RabbitMQ, through every hop a message can take.
@Suite("Tracing against RabbitMQ", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct TracingBrokerTests {
    /// every `process` span links to the context of the first publish.
    @Test func everyAttemptAndTheReplayLinkToTheFirstPublish() async throws {
        try await withCleanups { cleanups in
            let tracer = InMemoryTracer()
            let tracing = TracingOptions(tracer: tracer)
            let queue = TestBroker.uniqueName()
            let registration = HandlerRegistration(
                WelcomeEmail.self, queue: queue,
                options: HandlerOptions(retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.milliseconds(100)])))
            ) { _, context in
                if context.headers[WarrenHeader.originalPublishedAt] == nil { throw Flaky() }  // only a replay succeeds
            }
            let events = Mutex<[SettlementEvent]>([])
            let worker = try await RunningWorker.start(
                queue: queue, registrations: [registration], configuration: WorkerConfiguration(tracing: tracing),
                observer: { event in events.withLock { $0.append(event) } })
            cleanups.add { await worker.stop() }
            let transport = RabbitMQTransport(
                endpoints: [try AMQPEndpoint(uri: worker.url)], logger: TestBroker.quietLogger())
            try await transport.start()
            cleanups.add { await transport.close() }
            let publisher = WarrenPublisher(transport: transport, tracing: tracing)
            try await publisher.publish(
                WelcomeEmail(userId: "1", email: "traced@example.com"), to: .queue(queue), messageID: "traced-1")

            #expect(try await eventually { try await worker.deadLetters().count == 1 })
            let replay = try await HostAndCLITests.run(
                "warren", ["dlx", "replay", "--queue", queue, "--all"], url: worker.url)
            #expect(replay.status == 0, "\(replay.errors)")
            #expect(try await eventually { events.withLock { $0.contains { $0.outcome.name == "ack" } } })
            #expect(events.withLock { $0.map(\.outcome.name) } == ["retry", "dead-letter", "ack"])

            let spans = tracer.finishedSpans
            let publishes = spans.filter { $0.kind == .producer }
            let publish = try #require(publishes.first, "\(spans.map(\.operationName))")
            #expect(publishes.count == 1 && publish.operationName == "publish \(queue)")
            #expect(publish.attributes["messaging.system"]?.toSpanAttribute() == "rabbitmq")
            #expect(publish.attributes["messaging.message.id"]?.toSpanAttribute() == "traced-1")
            let processes = spans.filter { $0.kind == .consumer }.sorted {
                "\($0.attributes["warren.outcome"] ?? "")" > "\($1.attributes["warren.outcome"] ?? "")"
            }
            #expect(processes.count == 3, "\(spans.map(\.operationName))")
            for process in processes {
                #expect(process.operationName == "process \(queue)")
                #expect(process.links.count == 1, "one link each")
                #expect(
                    process.links.first?.context.inMemorySpanContext == publish.spanContext,
                    "linked to the first publish")
                #expect(process.traceID != publish.traceID, "a trace of its own (link, not parent)")
                #expect(process.attributes["messaging.destination.name"]?.toSpanAttribute() == .string(queue))
                #expect(process.attributes["messaging.message.id"]?.toSpanAttribute() == "traced-1")
            }
            let outcomes = Set(
                processes.compactMap { process -> String? in
                    guard case .string(let outcome) = process.attributes["warren.outcome"]?.toSpanAttribute() else {
                        return nil
                    }
                    return outcome
                })
            #expect(outcomes == ["retry", "dead-letter", "ack"])
            #expect(processes.filter { $0.status?.code == .error }.count == 2, "the two failures are errors")
        }
    }

    @Test func withParentRelationTheAttemptIsAChildOfThePublish() async throws {
        try await withCleanups { cleanups in
            let tracer = InMemoryTracer()
            let tracing = TracingOptions(tracer: tracer, processSpanRelation: .parent)
            let queue = TestBroker.uniqueName()
            let handled = Mutex(0)
            let registration = HandlerRegistration(WelcomeEmail.self, queue: queue) { _, _ in
                handled.withLock { $0 += 1 }
            }
            let worker = try await RunningWorker.start(
                queue: queue, registrations: [registration], configuration: WorkerConfiguration(tracing: tracing))
            cleanups.add { await worker.stop() }
            let transport = RabbitMQTransport(
                endpoints: [try AMQPEndpoint(uri: worker.url)], logger: TestBroker.quietLogger())
            try await transport.start()
            cleanups.add { await transport.close() }
            try await WarrenPublisher(transport: transport, tracing: tracing).publish(
                WelcomeEmail(userId: "p", email: "p@example.com"), to: .queue(queue))
            #expect(try await eventually { tracer.finishedSpans.contains { $0.kind == .consumer } })
            let publish = try #require(tracer.finishedSpans.first { $0.kind == .producer })
            let process = try #require(tracer.finishedSpans.first { $0.kind == .consumer })
            #expect(
                process.traceID == publish.traceID && process.parentSpanID == publish.spanID && process.links.isEmpty)
        }
    }

    /// Without any tracer: a valid W3C context gives the log lines their trace id and is passed on to follow-up
    /// messages; hostile ones are dropped, never crash the worker, and never reach the dead letters.
    @Test func withoutATracerTheW3CContextIsLoggedAndPassedOnAndHostileOnesDropped() async throws {
        try await withCleanups { cleanups in
            let queue = TestBroker.uniqueName()
            let followUps = TestBroker.uniqueName()
            let seen = Mutex<[String: (traceID: String?, headers: AMQPTable)]>([:])
            let registration = HandlerRegistration(WelcomeEmail.self, queue: queue) { email, context in
                seen.withLock { $0[email.userId] = (context.traceID, context.headers) }
                context.logger.info("handling")
                if email.userId == "follow" {
                    try await context.publish(WelcomeEmail(userId: "next", email: email.email), to: .queue(followUps))
                }
                if email.userId.hasPrefix("hostile-bounce") { throw Reject("bounce") }
            }
            let lines = LogLines()
            let url = try await TestBroker.url()
            let logger = Logger(label: "warren.tests.tracing") { _ in CapturingHandler(lines: lines) }
            let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
            let worker = Worker(transport: transport, registrations: [registration], logger: logger)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            try await worker.waitUntilConsuming()
            try await WarrenPublisher(transport: transport).declare(queue: followUps)

            let headers: AMQPTable = [
                "traceparent": .string(TraceParents.valid), "tracestate": .string("rojo=00f067aa0ba902b7"),
            ]
            try await RunningWorker.publish(
                #"{"userId":"follow","email":"f@example.com"}"#, to: queue, url: url, headers: headers)
            for (index, (name, value)) in TraceParents.hostile.enumerated() {
                let user = index.isMultiple(of: 2) ? "hostile-\(index)" : "hostile-bounce-\(index)"
                try await RunningWorker.publish(
                    #"{"userId":"\#(user)","email":"h@example.com"}"#, to: queue, url: url,
                    messageID: "hostile-\(name)",
                    headers: ["traceparent": value, "tracestate": .string("vendor=1")])
            }
            #expect(
                try await eventually { seen.withLock { $0.count } == TraceParents.hostile.count + 1 },
                "every message handled")

            let followed = try #require(seen.withLock { $0["follow"] })
            #expect(followed.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
            let handling = lines.all.first { $0["message"] == "handling" && $0["trace_id"] != nil }
            #expect(handling?["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736", "the handler's log lines carry it")
            #expect(
                lines.all.contains {
                    $0["message"] == "settled" && $0["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
                })
            // The follow-up carries the same context on.
            let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url), logger: TestBroker.logger)
            cleanups.add { await connection.close() }
            let next = try #require(try await connection.openChannel().get(queue: followUps))
            #expect(next.delivery.properties.headers?["traceparent"] == .string(TraceParents.valid))
            #expect(next.delivery.properties.headers?["tracestate"] == .string("rojo=00f067aa0ba902b7"))

            for (user, entry) in seen.withLock({ $0 }) where user.hasPrefix("hostile") {
                #expect(
                    entry.traceID == nil && entry.headers["traceparent"] == nil && entry.headers["tracestate"] == nil,
                    "\(user)")
            }
            #expect(
                !lines.all.contains {
                    ($0["message"] == "settled" || $0["message"] == "handling")
                        && $0["message_id"].map { "\($0)".hasPrefix("hostile") } == true && $0["trace_id"] != nil
                })
            let letters = try await transport.deadLetters(of: queue)
            #expect(letters.count == TraceParents.hostile.count / 2, "the bounced ones are dead letters")
            #expect(
                letters.allSatisfy {
                    $0.properties.headers?["traceparent"] == nil && $0.properties.headers?["tracestate"] == nil
                },
                "a dropped context is not copied")
            worker.shutdown()
            try await running.value
        }
    }
}
