import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Topology (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct TopologyTests {
    @Test func declaresAQueueAndCountsItsMessages() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName()
            let declared = try await channel.queueDeclare(queue, durable: true)
            #expect(declared.name == queue)
            #expect(declared.messageCount == 0)
            try await channel.enableConfirms()
            for _ in 0..<3 { try await channel.publish("m".bytes, routingKey: queue) }
            let status = try await channel.queueStatus(queue)
            #expect(status.messageCount == 3)
            #expect(status.consumerCount == 0)
            #expect(try await channel.queuePurge(queue) == 3)
            try await channel.publish("m".bytes, routingKey: queue)
            #expect(try await channel.queueDelete(queue) == 1)
        }
    }

    @Test func serverNamedQueue() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            let status = try await channel.queueDeclare("", durable: false, exclusive: true)
            #expect(status.name.hasPrefix("amq.gen-"))
        }
    }

    @Test func passiveDeclareOfAMissingQueueIs404AndClosesTheChannel() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            do {
                _ = try await channel.queueStatus(TestBroker.uniqueName())
                Issue.record("the queue does not exist")
            } catch let error as AMQPError {
                #expect(error.code == .channelClosed)
                #expect(error.replyCode == 404)
                #expect(error.replyText?.contains("NOT_FOUND") == true)
            }
            #expect(!channel.isOpen)
            #expect(channel.closeReason?.replyCode == 404)
            await #expect(throws: AMQPError.self) { try await channel.queueDeclare(TestBroker.uniqueName()) }
            // The connection and its other channels are unaffected.
            #expect(connection.isOpen)
            let other = try await connection.openChannel()
            try await other.queueDeclare(TestBroker.uniqueName(), exclusive: true)
        }
    }

    @Test func redeclareWithOtherArgumentsIs406() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, arguments: ["x-message-ttl": .int32(1000)])
            try await channel.queueDeclare(queue, arguments: ["x-message-ttl": .int32(1000)])  // idempotent
            let second = try await connection.openChannel()
            do {
                try await second.queueDeclare(queue, arguments: ["x-message-ttl": .int32(2000)])
                Issue.record("a different x-message-ttl must be refused")
            } catch let error as AMQPError {
                #expect(error.replyCode == 406)
                #expect(error.replyText?.contains("PRECONDITION_FAILED") == true)
            }
            try await channel.queueDelete(queue)
        }
    }

    @Test func reservedNameIs403() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            do {
                try await channel.queueDeclare("amq.warren-test")
                Issue.record("amq. names are reserved")
            } catch let error as AMQPError {
                #expect(error.replyCode == 403)
            }
        }
    }

    @Test func queueArgumentsAreApplied() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let quorum = TestBroker.uniqueName()
            try await channel.queueDeclare(
                quorum, arguments: ["x-queue-type": "quorum", "x-delivery-limit": .int32(3)])
            // Redeclaring as classic contradicts it.
            let probe = try await connection.openChannel()
            await #expect(throws: AMQPError.self) {
                try await probe.queueDeclare(quorum, arguments: ["x-queue-type": "classic"])
            }

            let capped = TestBroker.uniqueName()
            try await channel.queueDeclare(
                capped, arguments: ["x-max-length": .int32(2), "x-single-active-consumer": true])
            for n in 0..<5 { try await channel.publish("\(n)".bytes, routingKey: capped) }
            #expect(try await channel.queueStatus(capped).messageCount == 2)
            let head = try #require(try await channel.get(queue: capped, noAck: true))
            #expect(head.delivery.body == "3".bytes, "x-max-length drops from the head")
            try await channel.queueDelete(quorum)
            try await channel.queueDelete(capped)
        }
    }

    @Test func messageTTLDeadLettersIntoAnotherQueue() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let work = TestBroker.uniqueName("work")
            let delay = TestBroker.uniqueName("delay")
            try await channel.queueDeclare(work, exclusive: true)
            try await channel.queueDeclare(
                delay, exclusive: true,
                arguments: [
                    "x-message-ttl": .int32(200),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": .string(work),
                ])
            try await channel.publish("later".bytes, routingKey: delay)
            let consumer = try await channel.consume(queue: work)
            let delivery = try await nextDelivery(consumer)
            #expect(delivery.body == "later".bytes)
            let death = delivery.properties.headers?["x-death"]?.arrayValue?.first?.tableValue
            #expect(death?["queue"]?.stringValue == delay)
            #expect(death?["reason"]?.stringValue == "expired")
            try delivery.ack()
        }
    }

    @Test func exchangesBindingsAndExchangeToExchangeRouting() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let topic = TestBroker.uniqueName("topic")
            let fanout = TestBroker.uniqueName("fanout")
            let queue = TestBroker.uniqueName()
            try await channel.exchangeDeclare(topic, type: .topic, durable: false)
            try await channel.exchangeDeclare(fanout, type: .fanout, durable: false)
            try await channel.queueDeclare(queue, exclusive: true)
            try await channel.exchangeBind(destination: fanout, source: topic, routingKey: "orders.#")
            try await channel.queueBind(queue, exchange: fanout)

            try await channel.publish("routed".bytes, exchange: topic, routingKey: "orders.created", mandatory: true)
            let unroutable = await #expect(throws: AMQPError.self) {
                try await channel.publish("lost".bytes, exchange: topic, routingKey: "users.created", mandatory: true)
            }
            #expect(unroutable?.code == .unroutable)
            #expect(try await channel.queueStatus(queue).messageCount == 1)

            try await channel.exchangeUnbind(destination: fanout, source: topic, routingKey: "orders.#")
            let unbound = await #expect(throws: AMQPError.self) {
                try await channel.publish("x".bytes, exchange: topic, routingKey: "orders.created", mandatory: true)
            }
            #expect(unbound?.code == .unroutable)
            try await channel.queueUnbind(queue, exchange: fanout)
            try await channel.exchangeDelete(fanout)
            let check = try await connection.openChannel()
            do {
                try await check.exchangeDeclare(fanout, type: .fanout, passive: true)
                Issue.record("the exchange was deleted")
            } catch let error as AMQPError {
                #expect(error.replyCode == 404)
            }
            try await channel.exchangeDelete(topic)
        }
    }

    @Test func namesOver255BytesAreRejectedLocally() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            do {
                try await channel.queueDeclare(String(repeating: "q", count: 256))
                Issue.record("too long")
            } catch let error as AMQPError {
                #expect(error.code == .invalidArgument)
            }
            #expect(channel.isOpen, "a local validation error does not cost the channel")
        }
    }
}
