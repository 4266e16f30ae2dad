%% bench/peer_counter.erl -- the Erlang/OTP side of bench/peer: the counter
%% server as a gen_server and the same workload bench/peer runs on pgs (its
%% header says what is measured and why it is fair).  bench/peer compiles
%% this with erlc and runs
%%   erl -noshell -pa DIR -run peer_counter main SERVERS MILLISECONDS STARTS
%% (SERVERS: for the spread phase), which prints one `erlang_NAME VALUE
%% UNIT` line per figure and halts with status 0, or prints `erlang: ERROR
%% ...` and halts with status 1.
-module(peer_counter).
-behaviour(gen_server).
-export([main/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(CHUNK, 16).     % messages between clock reads, as in bench/peer.c
-define(WINDOW, 10000). % casts between flow-control calls, as in bench/peer.c

%% The counter: the state is the count.  A call adds its value and
%% replies with the new count; a cast adds its value.
init([]) -> {ok, 0}.
handle_call(V, _From, N) -> {reply, N + V, N + V}.
handle_cast(V, N) -> {noreply, N + V}.

main([Servers, Ms, Starts]) ->
    try
        run(list_to_integer(Servers), list_to_integer(Ms), list_to_integer(Starts)),
        erlang:halt(0)
    catch
        Class:Reason:Stack ->
            io:format("erlang: ERROR ~p:~p ~p~n", [Class, Reason, Stack]),
            erlang:halt(1)
    end.

%% The phases, as in bench/peer.c: {clients, servers}; each client calls
%% (or casts to) its own share of the servers in turn.
run(S, Ms, Starts) ->
    figure(schedulers, erlang:system_info(schedulers_online), count),
    figure(otp_release, list_to_integer(erlang:system_info(otp_release)), release),
    Pids = list_to_tuple([start() || _ <- lists:seq(1, max(S, 8))]),
    C1 = calls(Pids, 1, 1, Ms, calls_1client),
    C8 = calls(Pids, 8, 8, Ms, calls_8clients),
    CS = calls(Pids, 1, S, Ms, calls_1client_spread),
    K1 = casts(Pids, 1, Ms, casts),
    KS = casts(Pids, S, Ms, casts_spread),
    verify(Pids, C1 + C8 + CS + K1 + KS),
    {StartRate, IdleBytes} = start_idle(Starts),
    figure(start100k, StartRate, per_s),
    figure(idle_bytes, IdleBytes, bytes).

figure(Name, Value, Unit) when is_integer(Value) ->
    io:format("erlang_~s ~b ~s~n", [Name, Value, Unit]);
figure(Name, Value, Unit) ->
    io:format("erlang_~s ~.1f ~s~n", [Name, Value, Unit]).

start() ->
    {ok, Pid} = gen_server:start(?MODULE, [], []),
    Pid.

now_us() -> erlang:monotonic_time(microsecond).

%% Calls with value 1; the reply must be a new count (> 0).
call_one(Pid) ->
    case gen_server:call(Pid, 1) of
        R when is_integer(R), R > 0 -> ok;
        R -> error({bad_reply, R})
    end.

%% The counts must sum to every increment sent (a read: value 0).
verify(Pids, Expected) ->
    case lists:sum([gen_server:call(P, 0) || P <- tuple_to_list(Pids)]) of
        Expected -> ok;
        Sum -> error({lost_messages, Sum, Expected})
    end.

%% Client I of N owns servers [I*S div N, (I+1)*S div N) of the first S.
share(I, N, S) -> {I * S div N, (I + 1) * S div N - I * S div N}.

%% N processes call their share of S servers in turn for Ms; prints the
%% rate (calls / time from the start signal until the last one finished)
%% and returns the increments sent.
calls(Pids, N, S, Ms, Name) ->
    Parent = self(),
    Clients = [spawn_link(fun() -> caller(Parent, Pids, share(I, N, S), Ms) end)
               || I <- lists:seq(0, N - 1)],
    T0 = now_us(),
    [C ! go || C <- Clients],
    Total = lists:sum([receive {done, C, Calls} -> Calls end || C <- Clients]),
    figure(Name, Total / ((now_us() - T0) / 1.0e6), per_s),
    Total.

caller(Parent, Pids, Share, Ms) ->
    receive go -> ok end,
    End = now_us() + Ms * 1000,
    Parent ! {done, self(), call_loop(Pids, Share, 0, End)}.

call_loop(Pids, Share, I, End) ->
    call_chunk(Pids, Share, I, ?CHUNK),
    case now_us() < End of
        true -> call_loop(Pids, Share, I + ?CHUNK, End);
        false -> I + ?CHUNK
    end.

call_chunk(_, _, _, 0) -> ok;
call_chunk(Pids, {First, Count} = Share, I, K) ->
    call_one(element(First + I rem Count + 1, Pids)),
    call_chunk(Pids, Share, I + 1, K - 1).

%% One process casts value 1 to the first S servers in turn for Ms,
%% calling the server it cast to after every WINDOW casts (flow control:
%% no mailbox grows without bound), then calls each of them once more:
%% those replies come after every cast was handled.  Prints casts / the
%% whole time; returns the increments sent.
casts(Pids, S, Ms, Name) ->
    T0 = now_us(),
    Casts = cast_loop(Pids, S, 0, T0 + Ms * 1000),
    [call_one(element(I, Pids)) || I <- lists:seq(1, S)],
    figure(Name, Casts / ((now_us() - T0) / 1.0e6), per_s),
    Casts + Casts div ?WINDOW + S.

cast_loop(Pids, S, I, End) ->
    cast_chunk(Pids, S, I, ?CHUNK),
    case now_us() < End of
        true -> cast_loop(Pids, S, I + ?CHUNK, End);
        false -> I + ?CHUNK
    end.

cast_chunk(_, _, _, 0) -> ok;
cast_chunk(Pids, S, I, K) ->
    Pid = element(I rem S + 1, Pids),
    gen_server:cast(Pid, 1),
    case (I + 1) rem ?WINDOW of
        0 -> call_one(Pid);
        _ -> ok
    end,
    cast_chunk(Pids, S, I + 1, K - 1).

%% Starts N servers from this process, one after another (gen_server:start
%% returns once init has run), and measures erlang:memory(total) before and
%% after: {starts per second, bytes per idle server}.  The list of pids
%% this process keeps (16 bytes a server) is counted in.
start_idle(N) ->
    garbage_collect(),
    M0 = erlang:memory(total),
    T0 = now_us(),
    Pids = [start() || _ <- lists:seq(1, N)],
    Rate = N / ((now_us() - T0) / 1.0e6),
    garbage_collect(),
    M1 = erlang:memory(total),
    [exit(P, kill) || P <- Pids],
    {Rate, (M1 - M0) / N}.
