import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// Whatever a delivery holds, the worker settles it (handled or dead-lettered with a reason) and keeps consuming.
@Suite("Hostile input on RabbitMQ (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct HostileInputTests {
    let recorder = Recorder()

    @Test func garbageHeadersHugeBodiesAndForeignDeathRecordsAllSettle() async throws {
        let queue = TestBroker.uniqueName()
        let policy = RetryPolicy(maxAttempts: 3, backoff: .explicit([.milliseconds(100)]))
        let registration = HandlerRegistration(WelcomeEmail.self, queue: queue, options: HandlerOptions(retry: policy))
        { [recorder] email, context in
            recorder.record(email, context)
            if email.email.hasPrefix("fail") { throw Flaky() }
        }
        let settlements = Mutex<[SettlementEvent]>([])
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration],
            observer: { event in settlements.withLock { $0.append(event) } })
        let connection = try await worker.connect()
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        func send(
            _ id: String, body: [UInt8], headers: AMQPTable?, type: String? = WelcomeEmail.messageType,
            timestamp: Date? = nil
        ) async throws {
            try await channel.publish(
                body, routingKey: queue, mandatory: true,
                properties: AMQPProperties(
                    contentType: "application/json", headers: headers, messageID: id, timestamp: timestamp, type: type))
        }
        func email(_ address: String) -> [UInt8] { Array(#"{"userId":"h","email":"\#(address)"}"#.utf8) }

        var deep: AMQPFieldValue = "bottom"
        for _ in 0..<100 { deep = .table(["n": deep]) }
        try await send(
            "deep-headers", body: email("deep@example.com"),
            headers: ["nested": deep, "list": .array(Array(repeating: deep, count: 3))])
        try await send(
            "foreign-death", body: email("death@example.com"),
            headers: [
                "x-death": [
                    ["queue": "elsewhere", "reason": "expired", "count": .int64(7), "time": .timestamp(0)],
                    "not-a-table", .void,
                ]
            ])
        try await send(
            "garbage-attempt", body: email("attempt@example.com"),
            headers: [WarrenHeader.attempt: "lots", WarrenHeader.firstEnqueuedAt: .bytes([0xFF])])
        try await send(
            "huge-attempt", body: email("fail-late@example.com"), headers: [WarrenHeader.attempt: .int64(Int64.max)])
        try await send(
            "every-type", body: email("types@example.com"),
            headers: [
                "b": .bool(true), "i8": .int8(-1), "i16": .int16(-2), "i32": .int32(-3), "i64": .int64(-4),
                "f": .float(1),
                "d": .double(2), "dec": .decimal(scale: 2, value: 5), "bytes": .bytes([0, 0xFF]), "ts": .timestamp(1),
                "void": .void,
            ])
        try await send("huge-body", body: [UInt8](repeating: 0x20, count: 17 * 1024 * 1024), headers: nil)
        try await send("binary-body", body: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }, headers: nil)
        try await send("empty-type", body: email("x@example.com"), headers: nil, type: "")
        try await channel.publish(
            email("gz@example.com"), routingKey: queue, mandatory: true,
            properties: AMQPProperties(
                contentType: "application/json", contentEncoding: "gzip", messageID: "gzip",
                type: WelcomeEmail.messageType))
        try await send("deep-json", body: Array(String(repeating: "[", count: 100_000).utf8), headers: nil)
        try await send("nul-bytes", body: [UInt8](repeating: 0, count: 1024), headers: nil)
        // Times no clock gives, in the AMQP timestamp (2^64 - 1 seconds) and in Warren's headers: the queue wait, the
        // copy's headers and the copy's own timestamp are computed from them, and must not trap.
        try await send(
            "absurd-times", body: email("times@example.com"),
            headers: [
                WarrenHeader.lastFailureAt: .int64(Int64.min), WarrenHeader.publishedAt: .int64(Int64.max),
                WarrenHeader.firstEnqueuedAt: .int64(Int64.max),
            ],
            timestamp: Date(timeIntervalSince1970: 0x1p64))
        try await send(
            "absurd-times-failing", body: email("fail-times@example.com"),
            headers: [WarrenHeader.lastFailureAt: .int64(Int64.max)],
            timestamp: Date(timeIntervalSince1970: 0x1p64))
        // An empty AMQP type with Warren's type header: handled as that type, and reported as that type too.
        try await send(
            "empty-type-with-header", body: email("typed@example.com"),
            headers: [WarrenHeader.messageType: .string(WelcomeEmail.messageType)], type: "")

        let handled = [
            "deep@example.com", "death@example.com", "attempt@example.com", "types@example.com", "times@example.com",
            "typed@example.com",
        ]
        let settled = try await eventually(timeout: .seconds(30)) {
            let deadLetters = try await worker.deadLetters().count
            return handled.allSatisfy { recorder.calls(for: $0).count == 1 } && deadLetters == 8
        }
        #expect(settled, "six handled, eight dead-lettered")
        let typed = settlements.withLock { $0.first { $0.messageID == "empty-type-with-header" } }
        #expect(
            typed?.messageType == WelcomeEmail.messageType,
            "reported as the type it was handled as: \(String(describing: typed?.messageType))")
        #expect(
            recorder.calls(for: "fail-times@example.com").count == 3, "retried through its copies, then dead-lettered")
        #expect(
            recorder.calls(for: "attempt@example.com").first?.attempt == 1,
            "a garbage attempt header counts as the first attempt")
        let reasons = Dictionary(
            try await worker.deadLetters().map {
                ($0.properties.messageID ?? "?", $0.properties.headers?[WarrenHeader.reason]?.stringValue ?? "")
            },
            uniquingKeysWith: { first, _ in first })
        #expect(reasons["huge-attempt"] == "retries-exhausted", "an absurd attempt number cannot loop")
        #expect(reasons["huge-body"] == "too-large")
        #expect(reasons["binary-body"] == "undecodable")
        #expect(reasons["empty-type"] == "unknown-type")
        #expect(reasons["gzip"] == "unsupported-content-encoding")
        #expect(reasons["deep-json"] == "undecodable", "JSON nested 100,000 deep is refused, not a stack overflow")
        #expect(reasons["nul-bytes"] == "undecodable")
        #expect(worker.worker.isConsuming, "the worker is still up")
        try await channel.queuePurge(WarrenTopology(queue: queue).deadLetterQueue)
        await connection.close()
        await worker.stop()
    }
}
