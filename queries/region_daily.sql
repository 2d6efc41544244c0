-- Regional daily: yesterday's sales per city, with the userid of the city's region manager.
-- Parameter: day (ISO date string). Split by manager_userid, each manager gets their region.
-- The managers are listed here, not in the demo data: put your own userids (the ones below exist
-- in the sandbox's directory), or join your own table of managers.
SELECT m.manager_userid, r.name AS region, c.city AS city, COUNT(*) AS orders,
       ROUND(SUM(o.amount), 2) AS sales
FROM orders o
JOIN regions r ON r.region_id = o.region_id
JOIN customers c ON c.customer_id = o.customer_id
JOIN (
    SELECT '华东' AS region, 'east01' AS manager_userid
    UNION ALL SELECT '华南', 'user001'
    UNION ALL SELECT '华北', 'north01'
    UNION ALL SELECT '西南', 'user002'
    UNION ALL SELECT '华中', 'user003'
    UNION ALL SELECT '东北', 'sales_lead'
    UNION ALL SELECT '西北', 'east02'
) m ON m.region = r.name
WHERE o.order_date = :day AND o.status <> 'cancelled'
GROUP BY m.manager_userid, r.region_id, r.name, c.city
ORDER BY r.region_id, sales DESC, c.city
