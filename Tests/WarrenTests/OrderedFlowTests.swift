import Foundation
import Synchronization
import Testing
import WarrenAMQP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

/// An event of one order: its `seq` orders it among the order's events.
struct OrderEvent: PartitionedMessage, Equatable {
    static var messageType: String { "order.event" }
    var orderId: String
    var seq: Int
    var partitionKey: String { orderId }
}

/// Ordered flows on the in-memory transport: keys stay in order, a failure holds only its partition, a second worker
/// stands by.
@Suite("Ordered flows (in memory)")
struct OrderedFlowTests {
    /// What handlers saw, in the order they began, with the partition (queue) each ran on.
    final class Seen: Sendable {
        private let events = Mutex<[(event: OrderEvent, attempt: Int, queue: String)]>([])
        /// Handlers running now per partition, and the most that ever ran at once on one.
        private let running = Mutex<(now: [String: Int], most: Int)>(([:], 0))
        func add(_ event: OrderEvent, _ context: MessageContext) {
            events.withLock { $0.append((event, context.attempt, context.queue)) }
        }
        func enter(_ queue: String) {
            running.withLock { running in
                running.now[queue, default: 0] += 1
                running.most = max(running.most, running.now[queue] ?? 0)
            }
        }
        func leave(_ queue: String) { running.withLock { $0.now[queue, default: 1] -= 1 } }
        var mostAtOnceOnAPartition: Int { running.withLock { $0.most } }
        var all: [(event: OrderEvent, attempt: Int, queue: String)] { events.withLock { $0 } }
        var count: Int { events.withLock { $0.count } }
    }

    let flow = try! PartitionedFlow("order-events", partitions: 4)

    func registration(
        _ seen: Seen,
        options: HandlerOptions = HandlerOptions(
            prefetch: 5, retry: RetryPolicy(maxAttempts: 3, backoff: .explicit([.milliseconds(50)])),
            timeout: .seconds(5)),
        fails: @escaping @Sendable (OrderEvent, Int) -> Bool = { _, _ in false }
    ) -> HandlerRegistration {
        HandlerRegistration(OrderEvent.self, flow: flow, options: options) { event, context in
            seen.enter(context.queue)
            defer { seen.leave(context.queue) }
            seen.add(event, context)
            // Long enough for a second handler to overlap, were one let in.
            try await Task.sleep(for: .microseconds(200))
            if fails(event, context.attempt) { throw Flaky() }
        }
    }

    struct Flaky: Error {}

    @Test func aFlowIsValidatedAndAKeyAlwaysGoesToOnePartition() async throws {
        for (name, partitions) in [("", 4), ("amq.orders", 4), ("orders", 0), ("orders", 1_001), ("or ders", 2)] {
            #expect(throws: WarrenError.self, "\(name) \(partitions)") {
                try PartitionedFlow(name, partitions: partitions)
            }
        }
        #expect(flow.queues == (0..<4).map { "order-events.partition.\($0)" })
        let transport = InMemoryTransport()
        try await transport.prepare(flow: flow)
        let publisher = WarrenPublisher(transport: transport)
        for seq in 1...5 {
            for order in ["a", "b", "c", "d", "e", "f"] {
                try await publisher.publish(OrderEvent(orderId: order, seq: seq), to: .partitioned(flow))
            }
        }
        var partitionOf: [String: String] = [:]
        for queue in flow.queues {
            for message in transport.peek(queue) {
                #expect(message.properties.headers?[WarrenHeader.partitionKey] != nil)
                let key = message.properties.headers?[WarrenHeader.partitionKey]?.stringValue ?? ""
                #expect(partitionOf[key, default: queue] == queue, "one key, one partition")
                partitionOf[key] = queue
            }
        }
        #expect(partitionOf.count == 6)
        // A message that says no key cannot go to a flow; a key too long is refused.
        await #expect(throws: WarrenError.self) {
            try await publisher.publish(Ping(), to: .partitioned(flow))
        }
        _ = try await publisher.publish(Ping(), to: .partitioned(flow), headers: [WarrenHeader.partitionKey: "p"])
        await #expect(throws: WarrenError.self) {
            try await publisher.publish(
                OrderEvent(orderId: String(repeating: "k", count: 257), seq: 1), to: .partitioned(flow))
        }
    }

    @Test func aPublishedEventNamesTheFlowItsPartitionBeingTheBrokersChoice() async throws {
        let sink = EventsTests.StuckTransport()
        sink.blocked.update { $0 = false }
        let events = WarrenEventPublisher(transport: sink, logger: TestBroker.quietLogger())
        let transport = InMemoryTransport()
        let publisher = WarrenPublisher(transport: transport, events: events)
        let id = try await publisher.publish(OrderEvent(orderId: "o", seq: 1), to: .partitioned(flow))
        await events.flush()
        let sent = try sink.published.withLock { $0 }.flatMap { try WarrenEvent.decodeBatch($0.body) }
        #expect(sent.map(\.queue) == ["order-events"] && sent.first?.messageID == id, "\(sent)")
    }

    struct Ping: WarrenMessage {
        static var messageType: String { "ping" }
    }

    @Test func eachKeysEventsRunInOrderOneAtATimePerPartitionAndAFailureHoldsOnlyItsPartition() async throws {
        let transport = InMemoryTransport()
        let seen = Seen()
        // Order "slow-3" fails twice at seq 2, then succeeds; order "dead" fails every time at seq 3.
        let worker = Worker(
            transport: transport,
            registrations: [
                registration(seen) { event, attempt in
                    (event.orderId == "slow-3" && event.seq == 2 && attempt < 3)
                        || (event.orderId == "dead" && event.seq == 3)
                }
            ])
        try await whileRunning([{ try await worker.run() }]) {
            try await worker.waitUntilConsuming(timeout: .seconds(10))
            let publisher = WarrenPublisher(transport: transport)
            let orders = (0..<40).map { "order-\($0)" } + ["slow-3", "dead"]
            for seq in 1...10 {
                for order in orders {
                    try await publisher.publish(OrderEvent(orderId: order, seq: seq), to: .partitioned(flow))
                }
            }
            // 42 orders × 10 events, with 2 extra attempts of slow-3 and 2 of dead.
            #expect(try await eventually(timeout: .seconds(20)) { seen.count == 42 * 10 + 4 }, "\(seen.count)")
        }
        var byOrder: [String: [(seq: Int, attempt: Int)]] = [:]
        for (event, attempt, _) in seen.all { byOrder[event.orderId, default: []].append((event.seq, attempt)) }
        for (order, runs) in byOrder where order != "slow-3" && order != "dead" {
            #expect(runs.map(\.seq) == Array(1...10), "\(order) in order, once each")
        }
        #expect(byOrder["slow-3"]?.map(\.seq) == [1, 2, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10], "retried in place, in order")
        #expect(byOrder["slow-3"]?.filter { $0.seq == 2 }.map(\.attempt) == [1, 2, 3])
        #expect(byOrder["dead"]?.map(\.seq) == [1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9, 10], "dead-lettered, then the next")
        let letters = flow.queues.flatMap { transport.deadLetters(of: $0) }
        #expect(letters.count == 1 && letters.first?.reason?.kind == .retriesExhausted)
        #expect(
            try letters.first.map { try JSONDecoder().decode(OrderEvent.self, from: Data($0.body)) }
                == OrderEvent(orderId: "dead", seq: 3))
        // One at a time per partition: a partition's handlers never overlap; the partitions ran side by side.
        #expect(seen.mostAtOnceOnAPartition == 1)
        let partitions = Set(seen.all.map(\.queue))
        #expect(partitions.isSubset(of: Set(flow.queues)) && partitions.count > 1)
    }

    @Test func aStuckMessageHoldsItsPartitionOnlyWhileTheOthersGoOn() async throws {
        let transport = InMemoryTransport()
        let seen = Seen()
        let gate = AwaitableState(false)
        let options = HandlerOptions(prefetch: 5, retry: .never, timeout: .seconds(30))
        let worker = Worker(
            transport: transport,
            registrations: [
                HandlerRegistration(OrderEvent.self, flow: flow, options: options) { event, context in
                    seen.add(event, context)
                    if event.orderId == "stuck" { try await gate.wait { $0 } }
                }
            ])
        func partition(_ key: String) -> String { flow.queue(Int(PartitionHash.fnv1a(key) % 4)) }
        let orders = (0..<40).map { "order-\($0)" }
        let neighbours = orders.filter { partition($0) == partition("stuck") }
        try #require(!neighbours.isEmpty && neighbours.count < orders.count)
        try await whileRunning([{ try await worker.run() }]) {
            try await worker.waitUntilConsuming(timeout: .seconds(10))
            let publisher = WarrenPublisher(transport: transport)
            try await publisher.publish(OrderEvent(orderId: "stuck", seq: 1), to: .partitioned(flow))
            #expect(try await eventually { seen.count == 1 })
            for seq in 1...5 {
                for order in orders {
                    try await publisher.publish(OrderEvent(orderId: order, seq: seq), to: .partitioned(flow))
                }
            }
            let others = (orders.count - neighbours.count) * 5
            #expect(try await eventually { seen.count == 1 + others }, "the other partitions went on: \(seen.count)")
            try await Task.sleep(for: .milliseconds(100))
            #expect(seen.count == 1 + others, "nothing behind the stuck message ran")
            #expect(!seen.all.contains { neighbours.contains($0.event.orderId) })
            gate.update { $0 = true }
            #expect(try await eventually { seen.count == 1 + orders.count * 5 })
        }
    }

    @Test func aSecondWorkerTakesHalfThePartitionsAndAllOfThemWhenTheFirstStops() async throws {
        let transport = InMemoryTransport()
        let first = Seen()
        let second = Seen()
        let configuration = WorkerConfiguration(partitionTakeoverInterval: .milliseconds(100))
        let holder = Worker(transport: transport, registrations: [registration(first)], configuration: configuration)
        let joiner = Worker(transport: transport, registrations: [registration(second)], configuration: configuration)
        func held(_ worker: Worker) -> Int { worker.health.queues.filter { $0.state == .consuming }.count }
        func standing(_ worker: Worker) -> Int { worker.health.queues.filter { $0.state == .standby }.count }
        try await whileRunning([{ try await holder.run() }]) {
            try await holder.waitUntilConsuming(timeout: .seconds(10))
            #expect(held(holder) == 4, "alone, it holds every partition")
            try await whileRunning([{ try await joiner.run() }]) {
                // Two members: a share of two each; the first hands two over.
                #expect(
                    try await eventually(timeout: .seconds(10)) {
                        held(holder) == 2 && held(joiner) == 2 && standing(holder) == 2 && standing(joiner) == 2
                    }, "\(holder.health) \(joiner.health)")
                #expect(joiner.isConsuming && holder.isConsuming, "standing by is ready")
                let publisher = WarrenPublisher(transport: transport)
                for order in 0..<20 {
                    try await publisher.publish(OrderEvent(orderId: "o-\(order)", seq: 1), to: .partitioned(flow))
                }
                #expect(try await eventually { first.count + second.count == 20 })
                #expect(first.count > 0 && second.count > 0, "both handle their partitions")
                holder.shutdown()
                #expect(
                    try await eventually(timeout: .seconds(10)) { held(joiner) == 4 }, "\(joiner.health)")
                try await publisher.publish(OrderEvent(orderId: "x", seq: 2), to: .partitioned(flow))
                #expect(try await eventually { second.all.contains { $0.event == OrderEvent(orderId: "x", seq: 2) } })
            }
        }
    }

    @Test func anOrderedFlowThatCouldOutlastTheConsumerTimeoutIsRefusedAtStart() async throws {
        let seen = Seen()
        #expect(WorkerConfiguration().orderedFlowProblem([registration(seen, options: .ordered)]) == nil)
        let tooMany = HandlerOptions(prefetch: 20, timeout: .seconds(30))
        let problem = try #require(WorkerConfiguration().orderedFlowProblem([registration(seen, options: tooMany)]))
        #expect(problem.contains("prefetch 20") && problem.contains("consumer_timeout"), "\(problem)")
        #expect(
            WorkerConfiguration().orderedFlowProblem([registration(seen, options: HandlerOptions(timeout: nil))])?
                .contains("needs a handler timeout") == true)
        // Unlimited prefetch, a timeout that would overflow a Duration when multiplied, many attempts: refused, no trap.
        #expect(
            WorkerConfiguration().orderedFlowProblem([registration(seen, options: HandlerOptions(prefetch: 0))])?
                .contains("needs a prefetch") == true)
        let huge = HandlerOptions(prefetch: 5, timeout: .seconds(Int64.max / 2))
        #expect(WorkerConfiguration().orderedFlowProblem([registration(seen, options: huge)]) != nil)
        let many = HandlerOptions(
            prefetch: 1, retry: RetryPolicy(maxAttempts: .max, backoff: .exponential(initial: .seconds(1))),
            timeout: .seconds(1))
        #expect(WorkerConfiguration().orderedFlowProblem([registration(seen, options: many)]) != nil)
        // A flow's partitions take the largest prefetch of its registrations.
        let small = registration(seen, options: HandlerOptions(prefetch: 1, timeout: .seconds(30)))
        let large = registration(seen, options: HandlerOptions(prefetch: 20, timeout: .seconds(1)))
        #expect(WorkerConfiguration().orderedFlowProblem([small, large]) != nil, "20 × the small one's 165 s")
        // An in-place wait is capped at the policy's longest delay (a handler's RetryAfter included).
        #expect(RetryPolicy.default.longestDelay == .seconds(8))
        #expect(RetryPolicy.never.longestDelay == .zero)
        #expect(WorkerConfiguration(partitionTakeoverInterval: .zero).partitionTakeoverInterval == .milliseconds(50))
        let worker = Worker(transport: InMemoryTransport(), registrations: [registration(seen, options: tooMany)])
        await #expect {
            try await worker.run()
        } throws: { error in
            (error as? WarrenError)?.code == .invalidConfiguration
        }
    }

    @Test func aHoldersConsumerTagNamesItsProcessWithinAnAMQPShortString() {
        let tag = RabbitMQTransport.holderTag()
        #expect(tag.hasPrefix("warren-holder.") && tag.contains(".\(ProcessInfo.processInfo.processIdentifier)."))
        #expect(tag.utf8.count <= 255 && tag.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 32 }, "\(tag)")
        #expect(RabbitMQTransport.holderTag() != tag, "one per hold")
    }

    @Test func aReturnIsCountedPerMessageInARow() async throws {
        let transport = InMemoryTransport()
        let queue = flow.queue(0)
        #expect(try await transport.countReturn(of: "id:a", in: queue) == 1)
        #expect(try await transport.countReturn(of: "id:a", in: queue) == 2)
        #expect(try await transport.countReturn(of: "id:b", in: queue) == 1, "another message starts again")
        #expect(try await transport.countReturn(of: "id:a", in: flow.queue(1)) == 1, "per partition")
        #expect(ReturnMark(json: Array(#"{"message":"id:a","returns":3}"#.utf8))?.counted("id:a") == 4)
        for hostile in ["", "{", #"{"message":"x","returns":-1}"#, #"{"message":1,"returns":1}"#, "null"] {
            #expect(ReturnMark(json: Array(hostile.utf8)) == nil, "\(hostile)")
        }
        #expect(ReturnMark(json: Array(repeating: UInt8(ascii: " "), count: 5000)) == nil)
        #expect(OrderedDelivery.key(messageID: "m", body: []) == "id:m")
        #expect(OrderedDelivery.key(messageID: nil, body: [1, 2]) == OrderedDelivery.key(messageID: "", body: [1, 2]))
    }
}
