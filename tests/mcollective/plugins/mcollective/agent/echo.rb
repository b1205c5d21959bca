module MCollective
  module Agent
    # Returns what it is sent: the cheapest round trip, for benchmarks.
    class Echo < RPC::Agent
      action "run" do
        reply[:msg] = request[:msg]
        reply[:identity] = @config.identity
        reply[:length] = request[:msg].to_s.length
      end
    end
  end
end
