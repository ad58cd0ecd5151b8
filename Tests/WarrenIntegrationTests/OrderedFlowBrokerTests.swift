import Foundation
import Synchronization
import Testing
import WarrenAMQP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

/// Ordered flows on RabbitMQ: the consistent-hash exchange, partitions held by exclusive consumers, returns counted on
/// the broker.
@Suite("Ordered flows on RabbitMQ (broker)", .serialized, .tags(.broker), .needs(.broker))
struct OrderedFlowBrokerTests {
    struct Event: PartitionedMessage, Equatable {
        static var messageType: String { "order.event" }
        var orderId: String
        var seq: Int
        var partitionKey: String { orderId }
    }

    /// Handlings in the order they began: (order, seq, attempt, redelivered, worker).
    final class Seen: Sendable {
        struct Run: Sendable {
            var event: Event
            var redelivered: Bool
            var worker: String
        }
        private let runs = Mutex<[Run]>([])
        func add(_ event: Event, _ context: MessageContext, worker: String) {
            runs.withLock { $0.append(Run(event: event, redelivered: context.redelivered, worker: worker)) }
        }
        var all: [Run] { runs.withLock { $0 } }
        var count: Int { runs.withLock { $0.count } }
    }

    func transport(_ name: String) async throws -> RabbitMQTransport {
        RabbitMQTransport(
            endpoints: [try await TestBroker.endpoint()], connectionName: name, logger: TestBroker.quietLogger())
    }

    func worker(
        _ name: String, flow: PartitionedFlow, seen: Seen, redeliveryLimit: Int? = 10,
        handler: @escaping @Sendable (Event) async throws -> Void = { _ in }
    ) async throws -> Worker {
        Worker(
            transport: try await transport(name),
            registrations: [
                HandlerRegistration(Event.self, flow: flow) { event, context in
                    seen.add(event, context, worker: name)
                    try await handler(event)
                }
            ],
            configuration: WorkerConfiguration(
                redeliveryLimit: redeliveryLimit, health: HealthPolicy(stallAfter: .seconds(2)),
                partitionTakeoverInterval: .milliseconds(200)),
            logger: TestBroker.quietLogger())
    }

    /// Runs `body` with a started transport to publish on, then closes it and deletes the flow, however `body` ends.
    func withFlow(_ flow: PartitionedFlow, _ body: (RabbitMQTransport) async throws -> Void) async throws {
        let publishing = try await transport("publisher")
        try await publishing.start()
        try await withCleanups { cleanups in
            cleanups.add { try? await Self.deleteFlow(flow) }  // last
            cleanups.add { await publishing.close() }
            try await body(publishing)
        }
    }

    /// Deletes the flow's exchange and queues (each partition's Warren topology and its returns queue, the members).
    static func deleteFlow(_ flow: PartitionedFlow) async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            for queue in flow.queues {
                let topology = WarrenTopology(queue: queue)
                for name in [
                    queue, topology.deadLetterQueue, topology.redeliveredQueue, topology.manifestQueue,
                    PartitionedFlow.returnsQueue(of: queue),
                ] {
                    _ = try? await channel.queueDelete(name)
                }
            }
            _ = try? await channel.queueDelete(flow.membersQueue)
            try? await channel.exchangeDelete(flow.name)
        }
    }

    /// The first handling of each key's numbers, in the order they began, must be 1, 2, 3, … (a redelivery may handle a
    /// number again, never a later number before an earlier one).
    func firstHandlings(_ runs: [Seen.Run]) -> [String: [Int]] {
        var handled: [String: Set<Int>] = [:]
        var order: [String: [Int]] = [:]
        for run in runs where handled[run.event.orderId, default: []].insert(run.event.seq).inserted {
            order[run.event.orderId, default: []].append(run.event.seq)
        }
        return order
    }

    /// Both handovers happen mid-stream: the second worker joins while the first has a backlog in every partition
    /// (it hands two over), then the first stops while messages are still coming (the second takes the other two).
    @Test func aJoinerTakesItsShareMidStreamAndEveryPartitionWhenTheHolderGoesAndEachKeyStaysInOrder() async throws {
        let flow = try PartitionedFlow(TestBroker.uniqueName("flow"), partitions: 4)
        let seen = Seen()
        // Slow until the partitions are split (500 messages × 50 ms per partition: the backlog outlasts the handover even
        // on a loaded machine), then quick.
        let split = AwaitableState(false)
        let slow: @Sendable (Event) async throws -> Void = { _ in
            try await Task.sleep(for: split.value ? .milliseconds(1) : .milliseconds(50))
        }
        let first = try await worker("first", flow: flow, seen: seen, handler: slow)
        let second = try await worker("second", flow: flow, seen: seen, handler: slow)
        try await withFlow(flow) { publishing in
            let orders = (0..<100).map { "order-\($0)" }
            let publisher = WarrenPublisher(transport: publishing)
            func publish(_ numbers: ClosedRange<Int>) async throws {
                for seq in numbers {
                    for order in orders {
                        try await publisher.publish(Event(orderId: order, seq: seq), to: .partitioned(flow))
                    }
                }
            }
            func held(_ worker: Worker) -> Int { worker.health.queues.filter { $0.state == .consuming }.count }
            try await whileRunning([{ try await first.run() }]) {
                try await first.waitUntilConsuming(timeout: .seconds(20))
                #expect(held(first) == 4, "alone, it holds every partition")
                try await publish(1...20)
                try await whileRunning([{ try await second.run() }]) {
                    // Two members, a share of two each: the first hands two partitions over, backlog and all.
                    #expect(
                        try await eventually(timeout: .seconds(20)) { held(first) == 2 && held(second) == 2 },
                        "\(first.health) \(second.health)")
                    #expect(second.isConsuming && first.isConsuming, "standing by is ready")
                    #expect(
                        seen.count < orders.count * 20, "the handover happened with messages waiting (\(seen.count))")
                    split.update { $0 = true }
                    // What a handed-over partition had buffered went back to the broker: not a stall of its loop.
                    try await Task.sleep(for: .seconds(3))
                    #expect(first.liveness.isLive, "\(first.liveness)")
                    try await publish(21...25)
                    first.shutdown()  // mid-stream: what it holds is settled or goes back to its place
                    try await publish(26...30)
                    #expect(
                        try await eventually(timeout: .seconds(60)) {
                            Set(seen.all.map { "\($0.event.orderId)/\($0.event.seq)" }).count == orders.count * 30
                        }, "\(seen.count) handlings")
                    #expect(held(second) == 4)
                }
            }
            let order = firstHandlings(seen.all)
            #expect(order.count == orders.count)
            for (key, numbers) in order { #expect(numbers == Array(1...30), "\(key): \(numbers)") }
            #expect(Set(seen.all.map(\.worker)) == ["first", "second"], "both held partitions")
            // A key's partition had one holder at a time, and moved once at most (first to second): its handlings
            // by the second worker all began after its handlings by the first.
            var moved = 0
            for key in Set(seen.all.map(\.event.orderId)) {
                let runs = seen.all.filter { $0.event.orderId == key }
                let lastByFirst = runs.lastIndex { $0.worker == "first" } ?? -1
                let firstBySecond = runs.firstIndex { $0.worker == "second" } ?? .max
                #expect(lastByFirst < firstBySecond, "\(key): never two holders of its partition at once")
                if lastByFirst >= 0 && firstBySecond != .max { moved += 1 }
            }
            #expect(moved > 0, "keys changed hands")
        }
    }

    @Test func aMessageThatKeepsKillingItsHolderIsDeadLetteredInPlaceAndTheKeyGoesOn() async throws {
        let flow = try PartitionedFlow(TestBroker.uniqueName("flow"), partitions: 1)
        let seen = Seen()
        let holding = AwaitableState(0)
        let cuts = AwaitableState(0)
        struct Died: Error {}
        let worker = try await worker("poisoned", flow: flow, seen: seen, redeliveryLimit: 2) { event in
            guard event.seq == 2 else { return }
            // Runs until its connection is cut under it, then ends as a crash would: with nothing settled.
            let run = holding.update { run -> Int in
                run += 1
                return run
            }
            try await cuts.wait { $0 >= run }
            throw Died()
        }
        try await withFlow(flow) { publishing in
            try await whileRunning([{ try await worker.run() }]) {
                try await worker.waitUntilConsuming(timeout: .seconds(20))
                let publisher = WarrenPublisher(transport: publishing)
                for seq in 1...4 { try await publisher.publish(Event(orderId: "o", seq: seq), to: .partitioned(flow)) }
                // Each time it runs, its process "dies": the connection goes, the message returns to the head.
                for cut in 1...3 {
                    #expect(try await eventually(timeout: .seconds(30)) { holding.value == cut }, "run \(cut)")
                    let transport = try #require(worker.transport as? RabbitMQTransport)
                    await transport.connection?.close()
                    cuts.update { $0 = cut }
                }
                #expect(try await eventually(timeout: .seconds(30)) { seen.all.map(\.event.seq).contains(4) })
            }
            // (1 may run twice: its ack may not have left before the first cut.)
            #expect(firstHandlings(seen.all)["o"] == [1, 2, 3, 4], "never 3 before 2: \(seen.all.map(\.event.seq))")
            let twos = seen.all.filter { $0.event.seq == 2 }
            #expect(twos.map(\.redelivered) == [false, true, true], "three runs of 2, the last two after a return")
            #expect(holding.value == 3, "the fourth return went to the dead letters without running")
            let letters = try await publishing.deadLetters(of: flow.queue(0))
            #expect(letters.count == 1)
            #expect(letters.first?.reason?.kind == .redeliveryLimit, "\(String(describing: letters.first?.reason))")
            #expect(try letters.first.map { try JSONDecoder().decode(Event.self, from: Data($0.body)).seq } == 2)
        }
    }

    @Test func aSecondExclusiveConsumerIsRefusedUntilTheFirstConnectionGoes() async throws {
        let flow = try PartitionedFlow(TestBroker.uniqueName("flow"), partitions: 2)
        let one = try await transport("one")
        let two = try await transport("two")
        try await one.start()
        try await two.start()
        try await one.prepare(flow: flow)
        try await two.prepare(flow: flow)  // idempotent
        let held = try #require(try await one.consumeExclusively(queue: flow.queue(0), prefetch: 1))
        #expect(try await two.consumeExclusively(queue: flow.queue(0), prefetch: 1) == nil, "held by one")
        let other = try #require(try await two.consumeExclusively(queue: flow.queue(1), prefetch: 1), "a free one")
        #expect(two.isConnected, "a refusal closes its channel only")
        await one.close()
        #expect(try await eventually { try await two.consumeExclusively(queue: flow.queue(0), prefetch: 1) != nil })
        _ = held
        await other.close()
        await two.close()
        try await Self.deleteFlow(flow)
    }
}
