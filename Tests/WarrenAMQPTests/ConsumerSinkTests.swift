import Testing

@testable import WarrenAMQP

@Suite("A consumer's buffer")
struct ConsumerSinkTests {
    func message(_ tag: Int) -> InboundMessage {
        InboundMessage(
            body: [], properties: AMQPProperties(), deliveryTag: UInt64(tag), redelivered: false, exchange: "",
            routingKey: "q", consumerTag: "c", messageCount: 0)
    }

    func tags(_ sink: ConsumerSink, _ count: Int) async throws -> [UInt64] {
        var tags: [UInt64] = []
        for _ in 0..<count { tags.append(try #require(try await sink.next()).deliveryTag) }
        return tags
    }

    @Test func deliveriesComeOutInOrderWhileMoreArriveBetweenTakes() async throws {
        let sink = ConsumerSink()
        for tag in 1...5 { _ = sink.yield(message(tag)) }
        #expect(try await tags(sink, 2) == [1, 2], "the first take moves all five out of the shared buffer")
        for tag in 6...8 { _ = sink.yield(message(tag)) }
        #expect(try await tags(sink, 6) == [3, 4, 5, 6, 7, 8])
    }

    @Test func theSequenceEndsOnlyAfterWhatWasBuffered() async throws {
        let sink = ConsumerSink()
        for tag in 1...3 { _ = sink.yield(message(tag)) }
        #expect(try await sink.next()?.deliveryTag == 1)
        sink.finish(AMQPError(.consumerCancelled, message: "queue deleted"))
        #expect(try await tags(sink, 2) == [2, 3])
        await #expect(throws: AMQPError.self) { try await sink.next() }
    }

    @Test func aNormalEndAfterTheBufferReturnsNil() async throws {
        let sink = ConsumerSink()
        _ = sink.yield(message(1))
        sink.finish(nil)
        #expect(!sink.yield(message(2)), "nothing is buffered after the end")
        #expect(try await sink.next()?.deliveryTag == 1)
        #expect(try await sink.next() == nil)
    }

    @Test func aCancelledTaskThrowsEvenWithDeliveriesTakenOut() async throws {
        let sink = ConsumerSink()
        for tag in 1...3 { _ = sink.yield(message(tag)) }
        let task = Task {
            _ = try await sink.next()
            withUnsafeCurrentTask { $0?.cancel() }
            return try await sink.next()
        }
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
