import Testing

@testable import WarrenAMQP

@Suite("Content reassembly")
struct ContentAssemblerTests {
    @Test func headerThenBodiesCompletesAMessage() {
        var assembler = ContentAssembler<String>()
        guard case .incomplete = assembler.begin("deliver") else {
            Issue.record("begin")
            return
        }
        guard case .incomplete = assembler.header(bodySize: 5, properties: AMQPProperties(type: "t")) else {
            Issue.record("header")
            return
        }
        let first: [UInt8] = [1, 2]
        let second: [UInt8] = [3, 4, 5]
        guard case .incomplete = first.withUnsafeBytes({ assembler.body($0) }) else {
            Issue.record("body 1")
            return
        }
        guard case .complete(let method, let properties, let body) = second.withUnsafeBytes({ assembler.body($0) })
        else {
            Issue.record("body 2")
            return
        }
        #expect(method == "deliver")
        #expect(properties.type == "t")
        #expect(body == [1, 2, 3, 4, 5])
        #expect(assembler.isIdle)
    }

    @Test func emptyBodyCompletesAtTheHeader() {
        var assembler = ContentAssembler<Int>()
        _ = assembler.begin(1)
        guard case .complete(_, _, let body) = assembler.header(bodySize: 0, properties: AMQPProperties()) else {
            Issue.record("expected completion")
            return
        }
        #expect(body.isEmpty)
    }

    @Test func framesOutOfOrderAreProtocolViolations() {
        var assembler = ContentAssembler<Int>()
        guard case .protocolViolation = assembler.header(bodySize: 1, properties: AMQPProperties()) else {
            Issue.record("header without method")
            return
        }
        let byte: [UInt8] = [1]
        guard case .protocolViolation = byte.withUnsafeBytes({ assembler.body($0) }) else {
            Issue.record("body without header")
            return
        }
        _ = assembler.begin(1)
        guard case .protocolViolation = assembler.begin(2) else {
            Issue.record("method during content")
            return
        }
        var overflow = ContentAssembler<Int>()
        _ = overflow.begin(1)
        _ = overflow.header(bodySize: 1, properties: AMQPProperties())
        let two: [UInt8] = [1, 2]
        guard case .protocolViolation = two.withUnsafeBytes({ overflow.body($0) }) else {
            Issue.record("too long")
            return
        }
    }
}
