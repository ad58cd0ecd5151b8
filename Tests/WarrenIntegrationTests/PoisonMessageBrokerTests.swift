import Foundation
import Synchronization
import Testing
import WarrenAMQP
import WarrenTestSupport

@testable import Warren

/// Messages that come back unsettled (a crash, a killed worker) are counted and, over the bound, dead-lettered
/// without running their handler again.
@Suite("Redelivery bound on RabbitMQ (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct PoisonMessageBrokerTests {
    final class Seen: Sendable {
        let headers = Mutex<[AMQPTable]>([])
        func record(_ context: MessageContext) { headers.withLock { $0.append(context.headers) } }
        var all: [AMQPTable] { headers.withLock { $0 } }
    }

    func registration(queue: String, seen: Seen) -> HandlerRegistration {
        HandlerRegistration(WelcomeEmail.self, queue: queue) { _, context in seen.record(context) }
    }

    /// Takes the queue's head with `basic.get` and returns it unsettled `times` times, as a crashed consumer would.
    func bounce(_ queue: String, times: Int, url: String) async throws {
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        for _ in 0..<times {
            let channel = try await connection.openChannel()
            _ = try #require(try await channel.get(queue: queue))
            try await channel.close()
        }
        await connection.close()
    }

    func declare(_ queue: String, type: WarrenTopology.QueueType, url: String) async throws {
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        try await channel.queueDeclare(queue, durable: true, arguments: ["x-queue-type": .string(type.rawValue)])
        await connection.close()
    }

    @Test func aClassicRedeliveryIsReenqueuedWithItsCountThenHandled() async throws {
        let queue = TestBroker.uniqueName()
        let url = try await TestBroker.url()
        try await declare(queue, type: .classic, url: url)
        let seen = Seen()
        let events = Mutex<[SettlementEvent.Outcome]>([])
        try await RunningWorker.publish(
            #"{"userId":"p","email":"p@example.com"}"#, to: queue, url: url, messageID: "returned-once")
        try await bounce(queue, times: 1, url: url)

        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, seen: seen)],
            observer: { event in events.withLock { $0.append(event.outcome) } })
        #expect(try await eventually { seen.all.count == 1 })
        await worker.stop()
        #expect(seen.all.first?[WarrenHeader.redeliveries]?.int64Value == 1, "the handler sees the counted copy")
        // The copy may be handled before the original's settlement is reported.
        #expect(events.withLock { $0.map(\.name).sorted() } == ["ack", "requeue"])
        #expect(try await worker.deadLetters().isEmpty)
    }

    @Test func aSecondReturnIsHandledAloneFromTheRedeliveredQueue() async throws {
        let queue = TestBroker.uniqueName()
        let url = try await TestBroker.url()
        try await declare(queue, type: .classic, url: url)
        let seen = Seen()
        try await RunningWorker.publish(
            #"{"userId":"p","email":"p@example.com"}"#, to: queue, url: url, messageID: "returned-twice",
            headers: [WarrenHeader.redeliveries: .int64(1)])
        try await bounce(queue, times: 1, url: url)

        // A worker that only watches: its consumer of the work queue is the one that re-enqueues.
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, seen: seen)])
        #expect(try await eventually { seen.all.count == 1 })
        await worker.stop()
        #expect(seen.all.first?[WarrenHeader.redeliveries]?.int64Value == 2)
        let connection = try await worker.connect()
        let status = try await connection.openChannel().queueStatus(WarrenTopology(queue: queue).redeliveredQueue)
        await connection.close()
        #expect(status.messageCount == 0, "handled from the redelivered queue")
    }

    @Test func aClassicMessageOverTheBoundGoesToTheDeadLettersWithoutRunningItsHandler() async throws {
        let queue = TestBroker.uniqueName()
        let url = try await TestBroker.url()
        try await declare(queue, type: .classic, url: url)
        let seen = Seen()
        try await RunningWorker.publish(
            #"{"userId":"p","email":"p@example.com"}"#, to: queue, url: url, messageID: "poison",
            headers: [WarrenHeader.redeliveries: .int64(3)])
        try await bounce(queue, times: 1, url: url)

        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, seen: seen)],
            configuration: WorkerConfiguration(redeliveryLimit: 3))
        #expect(try await eventually { try await worker.deadLetters().count == 1 })
        await worker.stop()
        #expect(seen.all.isEmpty, "the handler never ran")
        let letter = try #require(try await worker.deadLetters().first)
        #expect(letter.properties.headers?[WarrenHeader.reason]?.stringValue == "redelivery-limit")
        #expect(letter.properties.headers?[WarrenHeader.errorMessage]?.stringValue?.contains("4 times") == true)
    }

    @Test func aQuorumQueueDeliveryCountBoundsIt() async throws {
        let queue = TestBroker.uniqueName()
        let url = try await TestBroker.url()
        try await declare(queue, type: .quorum, url: url)
        let seen = Seen()
        try await RunningWorker.publish(
            #"{"userId":"q","email":"q@example.com"}"#, to: queue, url: url, messageID: "poison-quorum")
        try await RunningWorker.publish(
            #"{"userId":"q","email":"fine@example.com"}"#, to: queue, url: url, messageID: "fine-quorum")
        try await bounce(queue, times: 3, url: url)

        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration(queue: queue, seen: seen)],
            configuration: WorkerConfiguration(redeliveryLimit: 2),
            queueType: .quorum)
        #expect(try await eventually { try await worker.deadLetters().count == 1 && seen.all.count == 1 })
        await worker.stop()
        #expect(seen.all.count == 1, "only the message that never came back ran")
        let letter = try #require(try await worker.deadLetters().first)
        #expect(letter.properties.messageID == "poison-quorum")
        #expect(letter.properties.headers?[WarrenHeader.reason]?.stringValue == "redelivery-limit")
    }
}
