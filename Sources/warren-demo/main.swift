import WarrenAMQP
import Foundation

let url = ProcessInfo.processInfo.environment["WARREN_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:25672/"
let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
print("connected", connection, connection.serverProperties["version"] ?? "?")
let channel = try await connection.openChannel()
let q = try await channel.queueDeclare("smoke", durable: true)
print(q)
try await channel.enableConfirms()
let t0 = Date()
let n = 20000
var batch: [AMQPOutboundMessage] = []
for i in 0..<n { batch.append(AMQPOutboundMessage(body: Array("hello \(i)".utf8), routingKey: "smoke", properties: AMQPProperties(deliveryMode: .persistent, messageID: "\(i)"))) }
let results = await channel.publish(contentsOf: batch)
print("published", results.filter { if case .success = $0 { return true } else { return false } }.count, Date().timeIntervalSince(t0))
do {
  try await channel.publish(Array("x".utf8), routingKey: "nope-no-queue", mandatory: true)
  print("mandatory: no error?!")
} catch { print("mandatory error:", error) }
let consumer = try await connection.openChannel().consume(queue: "smoke", prefetchCount: 200)
var got = 0
let t1 = Date()
for try await d in consumer {
  try d.ack()
  got += 1
  if got == n { break }
}
print("consumed", got, Date().timeIntervalSince(t1))
do { _ = try await channel.queueDeclare("does-not-exist", passive: true) } catch { print("passive:", error) }
await connection.close()
print("closed")
