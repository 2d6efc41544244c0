-- Daily sales: one row for the day, with the day before and the same weekday a week earlier.
-- Parameters (ISO date strings): day, prev_day, prev_week.
-- Cancelled orders never count. Portability (SQLite, PostgreSQL, MySQL give the same figures):
-- money is ROUNDed here; the 1.000000000 factor makes SQLite divide as REAL and gives MySQL's
-- division enough decimals; the 0.000000001 nudge makes an exact half-cent average (377.975)
-- round up on SQLite too, whose binary division lands just below it.
SELECT
    ROUND(COALESCE(SUM(CASE WHEN order_date = :day THEN amount END), 0), 2) AS sales,
    COUNT(CASE WHEN order_date = :day THEN 1 END) AS orders,
    COUNT(DISTINCT CASE WHEN order_date = :day THEN customer_id END) AS customers,
    ROUND(COALESCE(1.000000000 * SUM(CASE WHEN order_date = :day THEN amount END)
        / NULLIF(COUNT(CASE WHEN order_date = :day THEN 1 END), 0), 0) + 0.000000001, 2)
        AS avg_order,
    ROUND(COALESCE(SUM(CASE WHEN order_date = :prev_day THEN amount END), 0), 2) AS sales_prev_day,
    COUNT(CASE WHEN order_date = :prev_day THEN 1 END) AS orders_prev_day,
    ROUND(COALESCE(SUM(CASE WHEN order_date = :prev_week THEN amount END), 0), 2) AS sales_prev_week,
    COUNT(CASE WHEN order_date = :prev_week THEN 1 END) AS orders_prev_week
FROM orders
WHERE order_date IN (:day, :prev_day, :prev_week)
  AND status <> 'cancelled'
