import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport
import WarrenTesting

@Suite("The worker's life: a Service, waiting until it consumes, the harness's own settlements")
struct LifecycleTests {
    struct Forwarded: WarrenMessage {
        static var messageType: String { "test.forwarded" }
        var email: String
    }

    @Test func sendReturnsTheSettlementOfItsOwnMessageWhenHandlersPublishFollowUps() async throws {
        let forwardedHandled = AwaitableState<Set<String>>([])
        let forwarder = HandlerRegistration(
            WelcomeEmail.self, queue: "emails", options: HandlerOptions(maxConcurrentHandlers: 4)
        ) { email, context in
            try await context.publish(Forwarded(email: email.email), to: .queue("forwarded"))
            // The follow-up is handled (and settled) while this handler still runs.
            try await forwardedHandled.wait { $0.contains(email.email) }
        }
        let sink = HandlerRegistration(Forwarded.self, queue: "forwarded") { forwarded, _ in
            forwardedHandled.update { _ = $0.insert(forwarded.email) }
        }
        let harness = try await WarrenTestHarness(registrations: [forwarder, sink])
        try await withThrowingTaskGroup(of: (String, SettlementEvent).self) { group in
            for n in 0..<3 {
                group.addTask {
                    let id = "origin-\(n)"
                    return (
                        id,
                        try await harness.send(
                            WelcomeEmail(userId: "\(n)", email: "\(n)@example.com"), to: "emails", messageID: id)
                    )
                }
            }
            for try await (id, event) in group {
                #expect(event.messageID == id)
                #expect(event.queue == "emails")
            }
        }
        // The follow-ups' settlements were left for the test (some may still be on their way).
        var followUps: [SettlementEvent] = []
        for _ in 0..<3 { followUps.append(try await harness.nextSettlement()) }
        #expect(followUps.allSatisfy { $0.queue == "forwarded" }, "\(followUps)")
        await harness.stop()
    }

    @Test func aWorkerInAServiceGroupFinishesItsRunningHandlerOnAGracefulShutdown() async throws {
        let started = AwaitableState(false)
        let finished = Mutex(false)
        let registration = HandlerRegistration(WelcomeEmail.self, queue: "emails") { _, _ in
            started.update { $0 = true }
            try await Task.sleep(for: .milliseconds(200))
            finished.withLock { $0 = true }
        }
        let transport = InMemoryTransport()
        let worker = Worker(
            transport: transport, registrations: [registration],
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [worker], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })))
        let running = Task { try await group.run() }
        try await worker.waitUntilConsuming(timeout: .seconds(10))
        try await WarrenPublisher(transport: transport).publish(
            WelcomeEmail(userId: "1", email: "a@example.com"), to: .queue("emails"))
        try await started.wait { $0 }
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(finished.withLock { $0 }, "the handler ran to its end within the grace period")
        #expect(
            transport.depth(of: "emails").ready == 0 && transport.depth(of: "emails").unacked == 0,
            "and its message was acked")
        #expect(!worker.isConsuming)
    }

    @Test func waitingForAWorkerThatStoppedThrowsWithItsProblem() async throws {
        let worker = Worker(transport: InMemoryTransport(), registrations: [])
        await #expect(throws: WarrenError.self) { try await worker.run() }
        let error = await #expect(throws: WarrenError.self) {
            try await worker.waitUntilConsuming(timeout: .seconds(1))
        }
        #expect(error?.code == .notConsuming)
    }

    @Test func aContextWithoutAPublisherSaysSo() async throws {
        let context = MessageContext(messageID: "m", messageType: "t", queue: "q")
        let error = await #expect(throws: WarrenError.self) {
            try await context.publish(Forwarded(email: "x"), to: .queue("q"))
        }
        #expect(error?.code == .noPublisher)
    }
}
