import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport
import WarrenTesting

@_spi(WarrenTransport) @testable import Warren

@Suite("Jobs at a time: the delay cascade's arithmetic")
struct DelayCascadeTests {
    /// AMQP topic matching, written from the specification (words split at dots; `*` one word, `#` zero or more),
    /// independently of the cascade: the bindings must pick exactly the levels a delay's bits name.
    static func topicMatches(_ pattern: String, _ key: String) -> Bool {
        func match(_ pattern: ArraySlice<Substring>, _ key: ArraySlice<Substring>) -> Bool {
            guard let head = pattern.first else { return key.isEmpty }
            if head == "#" {
                return (0...key.count).contains { match(pattern.dropFirst(), key.dropFirst($0)) }
            }
            guard let word = key.first, head == "*" || head == word else { return false }
            return match(pattern.dropFirst(), key.dropFirst())
        }
        return match(
            ArraySlice(pattern.split(separator: ".", omittingEmptySubsequences: false)),
            ArraySlice(key.split(separator: ".", omittingEmptySubsequences: false)))
    }

    /// Follows a routing key through the bindings the transport declares: the levels whose queue it enters, and
    /// whether the delivery exchange hands it to `queue`.
    static func route(_ key: String, deliveringTo queue: String) -> (levels: [Int], delivered: Bool) {
        var held: [Int] = []
        for level in stride(from: DelayCascade.levelCount - 1, through: 0, by: -1) {
            let intoQueue = topicMatches(DelayCascade.bindingKey(level: level, bit: "1"), key)
            let onward = topicMatches(DelayCascade.bindingKey(level: level, bit: "0"), key)
            #expect(intoQueue != onward, "level \(level): exactly one binding matches \(key)")
            if intoQueue { held.append(level) }
        }
        return (held, topicMatches(DelayCascade.deliveryKey(queue: queue), key))
    }

    @Test func delaysUpToTwoYearsAddUpToTheirWholeSecondsThroughTheLevels() throws {
        let twoYears: Int64 = 2 * 365 * 86_400
        var delays: [Int64] = [0, 1, 2, 3, 59, 60, 3_600, 4_620, 86_399, 86_400, twoYears - 1, twoYears]
        delays += (0..<DelayCascade.levelCount).flatMap { level -> [Int64] in
            let power = Int64(1) << Int64(level)
            return [power - 1, power, power + 1]
        }
        var generator = SystemRandomNumberGenerator()
        delays += (0..<400).map { _ in Int64.random(in: 0...twoYears, using: &generator) }
        for steps in delays where steps < 1 << 26 {
            let key = DelayCascade.routingKey(steps: steps, queue: "orders.cleanup")
            let (levels, delivered) = Self.route(key, deliveringTo: "orders.cleanup")
            #expect(levels == DelayCascade.levels(steps: steps))
            #expect(levels.reduce(Int64(0)) { $0 + (Int64(1) << Int64($1)) } == steps, "held \(levels) for \(steps) s")
            #expect(delivered)
            #expect(!Self.route(key, deliveringTo: "cleanup").delivered, "another queue's binding must not match")
            #expect(!Self.route(key, deliveringTo: "orders").delivered)
        }
    }

    @Test func aDelayIsRoundedUpToWholeSecondsAndBoundedAt776Days() throws {
        let table: [(Duration, Int64)] = [
            (.zero, 0), (.seconds(-5), 0), (.nanoseconds(1), 1), (.milliseconds(999), 1), (.seconds(1), 1),
            (.milliseconds(1_001), 2), (.seconds(4_620), 4_620), (.seconds(63_072_000), 63_072_000),
            (DelayCascade.maximumDelay, (1 << 26) - 1),
        ]
        for (delay, steps) in table {
            #expect(try DelayCascade.steps(for: delay) == steps, "\(delay)")
        }
        #expect(throws: WarrenError.self) {
            try DelayCascade.steps(for: DelayCascade.maximumDelay + .nanoseconds(1))
        }
        #expect(throws: WarrenError.self) { try DelayCascade.steps(for: .seconds(Int64.max)) }
    }

    @Test func hostileDueTimesAndQueueNamesAreRefusedWithAReason() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let refused: [(String, Date)] = [
            ("orders", now.addingTimeInterval(777 * 86_400)),
            ("orders", .distantFuture),
            ("orders", Date(timeIntervalSinceReferenceDate: .infinity)),
            ("orders", Date(timeIntervalSinceReferenceDate: .nan)),
            ("", now.addingTimeInterval(10)),
            ("orders.*", now.addingTimeInterval(10)),
            ("#", now.addingTimeInterval(10)),
            ("a.#.b", now.addingTimeInterval(10)),
            (String(repeating: "q", count: 204), now.addingTimeInterval(10)),
        ]
        for (queue, dueTime) in refused {
            #expect(throws: WarrenError.self, "\(queue.prefix(20)) at \(dueTime)") {
                try DelayCascade.steps(toQueue: queue, at: dueTime, now: now)
            }
        }
        let accepted: [(String, Date, Int64)] = [
            ("orders", .distantPast, 0),
            ("orders", now, 0),
            ("orders", now.addingTimeInterval(0.2), 1),
            ("a*b.c#d", now.addingTimeInterval(3), 3),
            (String(repeating: "q", count: 203), now.addingTimeInterval(776 * 86_400), 776 * 86_400),
        ]
        for (queue, dueTime, steps) in accepted {
            #expect(try DelayCascade.steps(toQueue: queue, at: dueTime, now: now) == steps)
            #expect(DelayCascade.routingKey(steps: steps, queue: queue).utf8.count <= 255)
        }
    }

    @Test func eachLevelHoldsTwiceTheOneBelowWithinTheBrokersTTLBound() {
        let cascade = DelayCascade()
        #expect(cascade.holdMilliseconds(ofLevel: 0) == 1_000)
        #expect(cascade.holdMilliseconds(ofLevel: 25) == 33_554_432_000)
        #expect(cascade.holdMilliseconds(ofLevel: 25) <= 315_360_000_000, "the largest x-message-ttl 3.10 accepts")
        #expect(cascade.entryExchange == "warren.due.25")
        let scaled = DelayCascade(prefix: "test.due", speedUp: 1000)
        #expect(scaled.holdMilliseconds(ofLevel: 0) == 1)
        #expect(
            DelayCascade.levels(steps: 4_620).reduce(Int64(0)) { $0 + scaled.holdMilliseconds(ofLevel: $1) } == 4_620,
            "1 h 17 min on levels a thousand times faster: 4.62 s")
    }

    @Test func aMessageDueLaterWaitsOnTheTransportsClockAndCarriesItsDueTime() async throws {
        let clock = ManualClock()
        let transport = InMemoryTransport(clock: clock)
        let publisher = WarrenPublisher(transport: transport)
        try await transport.prepare(queue: "reports", delays: [])
        let before = Date()
        let id = try await publisher.publish(
            WelcomeEmail(userId: "a", email: "a@example.com"), to: .queue("reports"), after: .seconds(90))
        #expect(transport.peek("reports").isEmpty)
        #expect(transport.delayedCount == 1)
        clock.advance(by: .seconds(89))
        try await Task.sleep(for: .milliseconds(50))
        #expect(transport.peek("reports").isEmpty, "not before its due time")
        clock.advance(by: .seconds(1))
        guard try await eventually({ transport.peek("reports").count == 1 }) else { throw TestFailure("not delivered") }
        let delivered = try #require(transport.peek("reports").first)
        #expect(delivered.properties.messageID == id)
        let dueAt = try #require(delivered.properties.headers?[WarrenHeader.dueAt]?.int64Value)
        #expect(abs(dueAt - Int64((before.timeIntervalSince1970 + 90) * 1000)) < 1_000)

        _ = try await publisher.publish(
            WelcomeEmail(userId: "b", email: "b@example.com"), to: .queue("reports"), at: .distantPast)
        #expect(transport.peek("reports").count == 2, "due in the past: straight into the queue")
        await #expect(throws: WarrenError.self) {
            try await publisher.publish(
                WelcomeEmail(userId: "c", email: "c@example.com"), to: .exchange("events", routingKey: "reports"),
                after: .seconds(5))
        }
        await #expect(throws: WarrenError.self) {
            try await publisher.publish(
                WelcomeEmail(userId: "d", email: "d@example.com"), to: .queue("reports"), after: .seconds(1 << 27))
        }
    }
}
