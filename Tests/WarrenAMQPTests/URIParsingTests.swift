import Testing

@testable import WarrenAMQP

@Suite("RabbitMQ URI parsing")
struct URIParsingTests {
    @Test func defaultsForABareURI() throws {
        let endpoint = try AMQPEndpoint(uri: "amqp://")
        #expect(endpoint.host == "localhost")
        #expect(endpoint.port == 5672)
        #expect(endpoint.username == "guest")
        #expect(endpoint.password == "guest")
        #expect(endpoint.virtualHost == "/")
        #expect(endpoint.tls == nil)
        #expect(endpoint.heartbeat == AMQPEndpoint.defaultHeartbeat)
    }

    @Test func fullURIWithPercentEncoding() throws {
        let endpoint = try AMQPEndpoint(uri: "amqp://us%40er:p%3Ass%2Fw@rabbit.example:5673/%2F")
        #expect(endpoint.username == "us@er")
        #expect(endpoint.password == "p:ss/w")
        #expect(endpoint.host == "rabbit.example")
        #expect(endpoint.port == 5673)
        #expect(endpoint.virtualHost == "/")
    }

    @Test func namedVirtualHostAndEmptyPath() throws {
        #expect(try AMQPEndpoint(uri: "amqp://h/orders").virtualHost == "orders")
        #expect(try AMQPEndpoint(uri: "amqp://h/").virtualHost == "/")
        #expect(try AMQPEndpoint(uri: "amqp://h/a%2Fb").virtualHost == "a/b")
    }

    @Test func userWithoutPassword() throws {
        let endpoint = try AMQPEndpoint(uri: "amqp://alice@h")
        #expect(endpoint.username == "alice")
        #expect(endpoint.password == "guest")
    }

    @Test func ipv6Host() throws {
        let endpoint = try AMQPEndpoint(uri: "amqp://[::1]:5999/")
        #expect(endpoint.host == "::1")
        #expect(endpoint.port == 5999)
        #expect(endpoint.redactedURI == "amqp://guest:***@[::1]:5999/%2F")
    }

    @Test func queryParameters() throws {
        let endpoint = try AMQPEndpoint(
            uri: "amqp://h?heartbeat=5&connection_timeout=1500&channel_max=16&frame_max=8192")
        #expect(endpoint.heartbeat == .seconds(5))
        #expect(endpoint.connectionTimeout == .milliseconds(1500))
        #expect(endpoint.channelMax == 16)
        #expect(endpoint.frameMax == 8192)
        #expect(try AMQPEndpoint(uri: "amqp://h?heartbeat=0").heartbeat == nil)
    }

    @Test func tlsParameters() throws {
        let endpoint = try AMQPEndpoint(
            uri:
                "amqps://u:p@broker.example/?cacertfile=%2Fetc%2Fca.pem&certfile=/c.pem&keyfile=/k.pem&verify=verify_none&server_name_indication=broker.example"
        )
        #expect(endpoint.port == 5671)
        let tls = try #require(endpoint.tls)
        #expect(tls.caCertificatePath == "/etc/ca.pem")
        #expect(tls.certificatePath == "/c.pem")
        #expect(tls.keyPath == "/k.pem")
        #expect(tls.verifyPeer == false)
        #expect(tls.serverNameIndication == "broker.example")
        #expect(try AMQPEndpoint(uri: "amqps://h").tls?.verifyPeer == true)
    }

    @Test(arguments: [
        "http://h",
        "amqp//h",
        "amqp://h:0",
        "amqp://h:70000",
        "amqp://h:port",
        "amqp://h/a/b",
        "amqp://h?heartbeat=-1",
        "amqp://h?heartbeat=abc",
        "amqp://h?frame_max=100",
        "amqp://h?cacertfile=/ca.pem",
        "amqps://h?verify=maybe",
        "amqp://h?hearbeat=5",
        "amqp://h?auth_mechanism=external",
        "amqp://us%zzer@h",
        "amqp://[::1",
    ])
    func rejectsInvalidURIs(uri: String) {
        #expect(throws: AMQPError.self) { try AMQPEndpoint(uri: uri) }
        do {
            _ = try AMQPEndpoint(uri: uri)
        } catch {
            #expect(error.code == .invalidURI)
        }
    }

    @Test func passwordNeverAppearsInDescriptionsOrErrors() throws {
        let endpoint = try AMQPEndpoint(uri: "amqp://bob:hunter2secret@h:5672/v")
        #expect(!endpoint.description.contains("hunter2secret"))
        #expect(!"\(endpoint)".contains("hunter2secret"))
        #expect(!String(reflecting: endpoint.redactedURI).contains("hunter2secret"))
        do {
            _ = try AMQPEndpoint(uri: "amqp://bob:hunter2%zzsecret@h")
            Issue.record("a malformed escape must be rejected")
        } catch {
            #expect(!error.description.contains("hunter2"))
        }
    }

    @Test func listOfURIs() throws {
        let endpoints = try AMQPEndpoint.parseList("amqp://a:1/, amqp://b:2/ amqps://c")
        #expect(endpoints.map(\.host) == ["a", "b", "c"])
        #expect(endpoints.map(\.port) == [1, 2, 5671])
        #expect(throws: AMQPError.self) { try AMQPEndpoint.parseList(" ") }
    }
}
