require "json"

module MCollective
  module Util
    # The state of a simulated node: installed packages, services and a history of the
    # actions run, in one JSON file per node that the test harness reads. Writers hold an
    # flock on a side file and replace the file by rename, so a reader never sees half a
    # state; mcollectived runs requests in threads, and flock separates those too.
    class TestState
      EMPTY = {
        "packages" => {},          # name => installed version
        "available" => {},         # name => version an install/update gives (default 1.0-1)
        "broken_packages" => [],   # installing/updating these fails
        "services" => {},          # name => {"status", "starts", "stops", "restarts"}
        "broken_services" => [],   # starting/restarting these fails
        "history" => [],           # [{"agent", "action", "name", "state"}] in order
      }.freeze

      def initialize(path)
        raise "no state file configured for the simulated mode" if path.to_s.empty?

        @path = path
      end

      def read
        locked(File::LOCK_SH) { load }
      end

      # Yields the state to change in place and saves it; returns the block's value.
      def update
        locked(File::LOCK_EX) do
          state = load
          result = yield state
          tmp = "#{@path}.#{Process.pid}.#{Thread.current.object_id}"
          File.write(tmp, JSON.pretty_generate(state))
          File.rename(tmp, @path)
          result
        end
      end

      # Records an action as started and returns its index, to mark it done later.
      def begin_action(agent, action, name)
        update do |state|
          state["history"] << {"agent" => agent, "action" => action, "name" => name,
                               "state" => "started", "at" => Time.now.to_f}
          state["history"].size - 1
        end
      end

      def finish_action(state, index, outcome)
        state["history"][index]["state"] = outcome
      end

      private

      def load
        found = File.exist?(@path) ? JSON.parse(File.read(@path)) : {}
        Marshal.load(Marshal.dump(EMPTY)).merge(found)
      end

      def locked(mode)
        File.open("#{@path}.lock", File::RDWR | File::CREAT, 0o644) do |lock|
          lock.flock(mode)
          yield
        end
      end
    end
  end
end
