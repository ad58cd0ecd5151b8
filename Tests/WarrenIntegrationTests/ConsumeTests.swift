import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Consuming and settling (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct ConsumeTests {
    @Test func deliveriesCarryBodyPropertiesAndRoutingInformation() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let exchange = TestBroker.uniqueName("exchange")
            let queue = TestBroker.uniqueName()
            try await channel.exchangeDeclare(exchange, type: .direct, durable: false, autoDelete: true)
            try await channel.queueDeclare(queue, exclusive: true)
            try await channel.queueBind(queue, exchange: exchange, routingKey: "rk")

            let headers: AMQPTable = [
                "string": "value", "bool": true, "i8": .int8(-1), "u8": .uint8(255), "i16": .int16(-300),
                "i32": .int32(-70000), "i64": .int64(1 << 40), "f32": .float(0.5), "f64": .double(2.5),
                "decimal": .decimal(scale: 3, value: 1234), "bytes": .bytes([0, 159, 146, 150]),
                "timestamp": .timestamp(1_700_000_000), "void": .void,
                "array": [1, "two", ["three": 3]], "table": ["nested": ["deep": "yes"]],
            ]
            let properties = AMQPProperties(
                contentType: "application/json", contentEncoding: "identity", headers: headers,
                deliveryMode: .persistent, priority: 5, correlationID: "corr-1", replyTo: "replies",
                expiration: "60000", messageID: "msg-1", timestamp: Date(timeIntervalSince1970: 1_700_000_123),
                type: "email.welcome", userID: "guest", appID: "warren-tests", clusterID: "c1")
            try await channel.publish(#"{"a":1}"#.bytes, exchange: exchange, routingKey: "rk", properties: properties)

            let consumer = try await channel.consume(queue: queue, prefetchCount: 10)
            let delivery = try await nextDelivery(consumer)
            #expect(delivery.body == #"{"a":1}"#.bytes)
            #expect(delivery.exchange == exchange)
            #expect(delivery.routingKey == "rk")
            #expect(delivery.redelivered == false)
            #expect(delivery.consumerTag == consumer.tag)
            #expect(delivery.properties == properties)
            try delivery.ack()
        }
    }

    @Test func largeBodiesSpanManyFrames() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            let body = (0..<(5 * 1024 * 1024 + 17)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            try await channel.publish(body, routingKey: queue)
            try await channel.publish([], routingKey: queue)
            let consumer = try await channel.consume(queue: queue)
            let big = try await nextDelivery(consumer)
            #expect(big.body == body)
            let empty = try await nextDelivery(consumer)
            #expect(empty.body.isEmpty)
            try empty.ack(multiple: true)
        }
    }

    @Test func prefetchBoundsWhatTheClientBuffers() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            for n in 0..<20 { try await channel.publish("\(n)".bytes, routingKey: queue) }
            let consumer = try await channel.consume(queue: queue, prefetchCount: 5)
            // Nothing is acked: the broker must keep 15 of 20 ready, having sent only the prefetch. (Without the bound it
            // would send all twenty at once, and neither 15 here nor 10 below would ever be seen.)
            let held = try await eventually { try await channel.queueStatus(queue).messageCount == 15 }
            #expect(held)
            var iterator = consumer.makeAsyncIterator()
            var tags: [UInt64] = []
            for _ in 0..<5 { tags.append(try #require(try await iterator.next()).deliveryTag) }
            try channel.ack(deliveryTag: tags.last!, multiple: true)
            #expect(try await eventually { try await channel.queueStatus(queue).messageCount == 10 })
        }
    }

    @Test func acksInAnyOrderMixedWithNacksAllLandCorrectly() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            let dead = TestBroker.uniqueName("dead")
            try await channel.queueDeclare(dead, exclusive: true)
            try await channel.queueDeclare(
                queue, exclusive: true,
                arguments: ["x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(dead)])
            let batch = (0..<300).map { AMQPOutboundMessage(body: "\($0)".bytes, routingKey: queue) }
            _ = await channel.publish(contentsOf: batch)
            let consumerChannel = try await connection.openChannel()
            let consumer = try await consumerChannel.consume(queue: queue, prefetchCount: 300)
            var deliveries: [AMQPDelivery] = []
            var iterator = consumer.makeAsyncIterator()
            for _ in 0..<300 { deliveries.append(try #require(try await iterator.next())) }
            // Settle in a shuffled order: every 10th is rejected (dead-lettered), the rest acked.
            for delivery in deliveries.shuffled() {
                if Int(String(decoding: delivery.body, as: UTF8.self))! % 10 == 0 {
                    try delivery.reject(requeue: false)
                } else {
                    try delivery.ack()
                }
            }
            #expect(
                try await eventually { try await channel.queueStatus(dead).messageCount == 30 },
                "exactly the rejected ones")
            try await consumerChannel.close()  // anything still unacked would come back now
            // The queue drops the consumer after it took the channel's acks (they come from the same channel, in order)
            // and it requeues what that channel left unacked at the same moment: once the consumer is gone, the count
            // is final.
            #expect(try await eventually { try await channel.queueStatus(queue).consumerCount == 0 })
            #expect(try await channel.queueStatus(queue).messageCount == 0, "every ack landed")
            #expect(try await channel.queueStatus(dead).messageCount == 30)
        }
    }

    @Test func anAckThatClosesAGapAfterTheOthersWentOutAloneKeepsTheChannelOpen() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            // Twenty messages behind a prefetch of ten: the broker sends the eleventh only once it has an ack, so each
            // delivery beyond the first ten tells the test that the broker took one more ack (no time window).
            _ = await channel.publish(
                contentsOf: (0..<20).map { AMQPOutboundMessage(body: "\($0)".bytes, routingKey: queue) })
            let consumerChannel = try await connection.openChannel()
            let consumer = try await consumerChannel.consume(queue: queue, prefetchCount: 10)
            var first: [AMQPDelivery] = []
            for _ in 0..<10 { first.append(try await nextDelivery(consumer)) }
            // The first delivery's handler is slow: the nine acks behind it go out one by one (they cannot be one
            // `multiple` ack without settling the first), and the broker answers each with a delivery.
            for delivery in first.dropFirst() { try delivery.ack() }
            var later: [AMQPDelivery] = []
            for _ in 0..<9 { later.append(try await nextDelivery(consumer)) }
            #expect(later.map { String(decoding: $0.body, as: UTF8.self) } == (10..<19).map { "\($0)" })
            // Exactly nine acks reached the broker: a `multiple` ack swallowing the first would have freed ten.
            #expect(try await channel.queueStatus(queue).messageCount == 1)
            // Closing the gap must ack the first delivery alone: a `multiple` ack up to the tenth would name tags the
            // broker no longer knows, and it would close the channel instead of sending the twentieth message.
            try first[0].ack()
            let last = try await nextDelivery(consumer)
            #expect(String(decoding: last.body, as: UTF8.self) == "19")
            #expect(consumerChannel.isOpen, "\(String(describing: consumerChannel.closeReason))")
            for delivery in later + [last] { try delivery.ack() }
            try await consumerChannel.close()
            #expect(try await eventually { try await channel.queueStatus(queue).messageCount == 0 })
        }
    }

    @Test func nackWithRequeueRedeliversAndRejectDrops() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            try await channel.publish("once".bytes, routingKey: queue)
            let consumer = try await channel.consume(queue: queue, prefetchCount: 1)
            let first = try await nextDelivery(consumer)
            #expect(!first.redelivered)
            try first.nack(requeue: true)
            let again = try await nextDelivery(consumer)
            #expect(again.redelivered)
            #expect(again.body == "once".bytes)
            // No consumer left to take a wrongly requeued message back at once (the tag stays valid after a cancel).
            try await consumer.cancel()
            try again.reject(requeue: false)
            // The reject and this get travel the same channel to the same queue, in order: no window needed.
            #expect(try await channel.get(queue: queue) == nil)
            #expect(try await channel.queueStatus(queue).messageCount == 0)
        }
    }

    @Test func rejectWithoutRequeueDeadLetters() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let dead = TestBroker.uniqueName("dead")
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(dead, exclusive: true)
            try await channel.queueDeclare(
                queue, exclusive: true,
                arguments: [
                    "x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(dead),
                ])
            try await channel.publish("poison".bytes, routingKey: queue)
            let consumer = try await channel.consume(queue: queue)
            try await nextDelivery(consumer).nack(requeue: false)
            #expect(try await eventually { try await channel.queueStatus(dead).messageCount == 1 })
        }
    }

    @Test func aCancelledTaskStopsIteratingEvenWithDeliveriesBuffered() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            for n in 0..<5 { try await channel.publish("m\(n)".bytes, routingKey: queue) }
            let consumer = try await channel.consume(queue: queue, prefetchCount: 5)
            _ = try await nextDelivery(consumer)
            #expect(try await eventually { consumer.receivedDeliveries == 5 }, "the other four wait in the buffer")
            let iteration = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await consumer.next()
            }
            await #expect(throws: CancellationError.self) { try await iteration.value }
        }
    }

    @Test func clientCancelEndsTheSequenceNormally() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            let consumer = try await channel.consume(queue: queue)
            #expect(try await channel.queueStatus(queue).consumerCount == 1)
            try await consumer.cancel()
            var iterator = consumer.makeAsyncIterator()
            #expect(try await iterator.next() == nil)
            #expect(try await channel.queueStatus(queue).consumerCount == 0)
        }
    }

    @Test func brokerCancelEndsTheSequenceWithAnError() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue)
            let consumer = try await channel.consume(queue: queue)
            let other = try await connection.openChannel()
            try await other.queueDelete(queue)
            var iterator = consumer.makeAsyncIterator()
            do {
                _ = try await iterator.next()
                Issue.record("the broker cancelled the consumer")
            } catch let error as AMQPError {
                #expect(error.code == .consumerCancelled)
            }
            #expect(channel.isOpen, "a broker cancel does not close the channel")
        }
    }

    @Test func closingTheChannelReturnsUnackedDeliveries() async throws {
        try await withConnection { connection in
            let publisher = try await connection.openChannel()
            try await publisher.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await publisher.queueDeclare(queue, exclusive: true)
            for n in 0..<3 { try await publisher.publish("\(n)".bytes, routingKey: queue) }
            let channel = try await connection.openChannel()
            let consumer = try await channel.consume(queue: queue, prefetchCount: 10)
            _ = try await nextDelivery(consumer)
            try await channel.close()
            #expect(!channel.isOpen)
            #expect(try await eventually { try await publisher.queueStatus(queue).messageCount == 3 })
        }
    }

    @Test func basicGetFetchesOneMessageWithTheRemainingCount() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            #expect(try await channel.get(queue: queue) == nil)
            for n in 0..<3 {
                try await channel.publish(
                    "\(n)".bytes, routingKey: queue, properties: AMQPProperties(messageID: "id-\(n)"))
            }
            let first = try #require(try await channel.get(queue: queue))
            #expect(first.delivery.body == "0".bytes)
            #expect(first.delivery.properties.messageID == "id-0")
            #expect(first.messageCount == 2)
            try first.delivery.nack(requeue: true)
            let again = try #require(try await channel.get(queue: queue, noAck: true))
            #expect(again.delivery.redelivered)
            #expect(again.delivery.body == "0".bytes)
        }
    }

    @Test func deliveriesOfSeveralConsumersOnOneChannelGoToTheirOwnSequence() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let a = TestBroker.uniqueName("a")
            let b = TestBroker.uniqueName("b")
            try await channel.queueDeclare(a, exclusive: true)
            try await channel.queueDeclare(b, exclusive: true)
            let consumerA = try await channel.consume(queue: a)
            let consumerB = try await channel.consume(queue: b)
            try await channel.publish("to b".bytes, routingKey: b)
            try await channel.publish("to a".bytes, routingKey: a)
            #expect(try await nextDelivery(consumerA).body == "to a".bytes)
            #expect(try await nextDelivery(consumerB).body == "to b".bytes)
        }
    }
}
