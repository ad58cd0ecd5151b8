// `make demo`: the whole path of a message on a real RabbitMQ, end to end, then everything stops.
// Starts a throwaway node (or uses WARREN_AMQP_URL), declares a durable work queue, publishes a batch with
// publisher confirms, consumes it with a prefetch and acks each delivery, shows an unroutable publish being
// refused, and reports what happened.
import Foundation
import WarrenAMQP
import WarrenLocalBroker

func line(_ text: String) {
    print(text)
    fflush(nil)  // keep our lines in order with the log lines on stderr
}

let environment = ProcessInfo.processInfo.environment
let messageCount = Int(environment["WARREN_DEMO_MESSAGES"] ?? "") ?? 10_000
var broker: LocalBroker?
let url: String
if let given = environment["WARREN_AMQP_URL"], !given.isEmpty {
    url = given
    line("→ using the broker at \(try AMQPEndpoint(uri: given).redactedURI)")
} else {
    line("→ starting a throwaway RabbitMQ node on 127.0.0.1 …")
    let started = try await LocalBroker.start()
    broker = started
    url = started.amqpURL
    line("  \(started.nodeName) listens on port \(started.port)")
}

var failed = false
do {
    let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url), connectionName: "warren-demo")
    line(
        "→ connected to RabbitMQ \(connection.serverProperties["version"]?.stringValue ?? "?") at \(connection.endpoint)"
    )

    let channel = try await connection.openChannel()
    try await channel.enableConfirms()
    let queue = "warren.demo.jobs"
    try await channel.queueDeclare(queue, durable: true)
    try await channel.queuePurge(queue)
    line("→ declared durable queue \(queue)")

    let clock = ContinuousClock()
    let messages = (0..<messageCount).map { n in
        AMQPOutboundMessage(
            body: Array(#"{"job":\#(n)}"#.utf8), routingKey: queue, mandatory: true,
            properties: AMQPProperties(
                contentType: "application/json", headers: ["attempt": .int32(1)], deliveryMode: .persistent,
                messageID: "job-\(n)", timestamp: Date(), type: "demo.job"))
    }
    let publishStart = clock.now
    let results = await channel.publish(contentsOf: messages)
    let publishTime = clock.now - publishStart
    let confirmed = results.filter { if case .success = $0 { true } else { false } }.count
    line("→ published \(confirmed)/\(messageCount) persistent messages, each confirmed by the broker")

    do {
        try await channel.publish(Array("lost?".utf8), routingKey: "no.such.queue", mandatory: true)
        line("  ✗ an unroutable mandatory publish was accepted")
        failed = true
    } catch let error as AMQPError where error.code == .unroutable {
        line("→ an unroutable mandatory publish was refused: \(error.replyCode ?? 0) \(error.replyText ?? "")")
    }

    let consumerChannel = try await connection.openChannel()
    let consumer = try await consumerChannel.consume(queue: queue, prefetchCount: 200)
    var seen = Set<String>()
    let consumeStart = clock.now
    for try await delivery in consumer {
        seen.insert(delivery.properties.messageID ?? "")
        try delivery.ack()
        if seen.count == confirmed { break }
    }
    let consumeTime = clock.now - consumeStart
    try await consumer.cancel()
    let left = try await channel.queueStatus(queue).messageCount
    line("→ consumed and acked \(seen.count) messages; \(left) left in the queue")

    func rate(_ count: Int, _ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return String(format: "%8.0f msg/s", Double(count) / max(seconds, 1e-9))
    }
    line("")
    line("  report (debug build; see `make bench` for release figures)")
    line("  published with confirms  \(rate(confirmed, publishTime))")
    line("  consumed with acks       \(rate(seen.count, consumeTime))")
    line("  lost                     \(messageCount - seen.count)")
    if seen.count != messageCount || left != 0 { failed = true }

    try await channel.queueDelete(queue)
    await connection.close()
} catch {
    line("✗ \(error)")
    failed = true
}

if let broker {
    line("→ stopping the throwaway node")
    try await broker.stop()
}
line(failed ? "✗ demo failed" : "✓ demo finished")
exit(failed ? 1 : 0)
