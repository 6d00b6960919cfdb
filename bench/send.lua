-- wrk script: POST a message to a running tern node.
-- usage: ACCOUNT_SID=AC… AUTH_TOKEN=… FROM=+1… wrk -t2 -c64 -d10s --latency -s bench/send.lua \
--          http://127.0.0.1:8080/2010-04-01/Accounts/$ACCOUNT_SID/Messages.json
local sid = os.getenv("ACCOUNT_SID")
local token = os.getenv("AUTH_TOKEN")
local from = os.getenv("FROM")

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. base64(sid .. ":" .. token)
wrk.body = "To=%2B14155552671&From=" .. from:gsub("%+", "%%2B") .. "&Body=Tern+benchmark+message"
-- wrk itself counts answers other than 2xx/3xx ("Non-2xx or 3xx responses").
