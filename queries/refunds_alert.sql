-- Refunds alert: one row when the day's refunds exceed threshold (a fraction, e.g. 0.05) of its
-- orders, otherwise no row at all (the report skips on empty).
-- Parameters: day (ISO date string), threshold (a number; text such as '0.05' works too).
-- Rate = refunds dated day / orders placed that day; cancelled orders never count.
-- Portability: see daily_sales.sql for the 1.000000000 factor and the 0.000000001 nudge;
-- top_reason ties go to the reason reported first, never to a collation-dependent name order.
SELECT day, orders, refunds,
       ROUND(1.000000000 * refunds / orders + 0.000000001, 4) AS refund_rate,
       refund_amount, top_reason
FROM (
    SELECT
        :day AS day,
        (SELECT COUNT(*) FROM orders WHERE order_date = :day AND status <> 'cancelled') AS orders,
        (SELECT COUNT(*) FROM refunds WHERE refund_date = :day) AS refunds,
        (SELECT ROUND(COALESCE(SUM(amount), 0), 2) FROM refunds
         WHERE refund_date = :day) AS refund_amount,
        (SELECT reason FROM refunds WHERE refund_date = :day
         GROUP BY reason ORDER BY COUNT(*) DESC, MIN(refund_id) LIMIT 1) AS top_reason
) d
-- CAST: SQLite would compare a threshold bound as text as text, never as a number.
WHERE orders > 0 AND 1.000000000 * refunds / orders > CAST(:threshold AS DECIMAL(10, 6))
